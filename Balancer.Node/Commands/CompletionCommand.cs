using System.CommandLine;

namespace Balancer.Node.Commands;

/// <summary>
/// <c>balancer completion bash|zsh</c>: a script that asks the executable itself what comes next
/// (System.CommandLine's <c>[suggest:POSITION]</c> directive), so completions always match the
/// verbs and options of the binary installed.
/// </summary>
internal static class CompletionCommand
{
    public const string Bash = """
        # bash completion for balancer; load with: source <(balancer completion bash)
        _balancer_completions()
        {
            local IFS=$'\n'
            local candidates
            candidates=$("${COMP_WORDS[0]}" "[suggest:${COMP_POINT}]" "${COMP_LINE}" 2>/dev/null)
            COMPREPLY=( $(compgen -W "${candidates}" -- "${COMP_WORDS[COMP_CWORD]}") )
        }
        complete -o default -F _balancer_completions balancer
        """;

    public const string Zsh = """
        #compdef balancer
        # zsh completion for balancer; load with: source <(balancer completion zsh)
        _balancer() {
          local -a candidates
          candidates=("${(@f)$(${words[1]} "[suggest:${CURSOR}]" "${BUFFER}" 2>/dev/null)}")
          compadd -a candidates
        }
        compdef _balancer balancer
        """;

    public static Command Create()
    {
        var shell = new Argument<string>("SHELL") { Description = "bash or zsh." };
        shell.AcceptOnlyFromAmong("bash", "zsh");
        var command = new Command("completion", "Print a shell completion script: `source <(balancer completion bash)`.") { shell };
        command.SetAction(parse => parse.InvocationConfiguration.Output.WriteLine(parse.GetValue(shell) == "zsh" ? Zsh : Bash));
        return command;
    }
}

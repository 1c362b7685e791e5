// Command chains-sensor watches network interfaces (attach) or reads capture files (read) and
// prints, one line per packet, who talks to whom. See DESIGN.md.
package main

import (
	"os"

	"github.com/urfave/cli/v2"
)

func main() { os.Exit(run(os.Args, os.Stdout, os.Stderr)) }

// commands lists the subcommands; each lives in its own file (read.go, ...).
func commands() []*cli.Command {
	return []*cli.Command{
		readCommand(),
		attachCommand(),
		checkCommand(),
		watchCommand(),
	}
}

// Command pause holds a pod's namespaces open: it does nothing until asked to stop.
//
// As the first process of a pod's PID namespace (shareProcessNamespace) it also becomes the
// parent of every orphaned process there, so it collects their exit statuses; otherwise
// they would stay zombies until the pod goes away.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// version is what `pause -v` prints; scripts/upstream stamps the image tag into it.
var version = "dev"

func main() {
	if len(os.Args) > 1 {
		if len(os.Args) == 2 && (os.Args[1] == "-v" || os.Args[1] == "--version") {
			fmt.Printf("pause %s\n", version)
			return
		}
		fmt.Fprintln(os.Stderr, "usage: pause [-v]")
		os.Exit(2)
	}
	if os.Getpid() != 1 {
		// Outside a container it still works, it merely reaps nothing but its own children.
		fmt.Fprintln(os.Stderr, "pause: not the first process of a PID namespace")
	}
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range signals {
		if s == syscall.SIGCHLD {
			reap()
			continue
		}
		// A stop request is the normal end of a sandbox: success.
		os.Exit(0)
	}
}

// reap collects every child that has exited. Signals coalesce, so one SIGCHLD may stand
// for several exits: loop until none is left.
func reap() {
	for {
		var status syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if pid <= 0 || err != nil {
			return
		}
	}
}

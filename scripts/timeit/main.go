// Command timeit prints the median wall time, in milliseconds, of N runs of
// a command, its output discarded: scripts/bench's timer for whole-process
// figures (berth's CLI and its peers alike).
//
//	go run ./scripts/timeit [-once] N CMD [ARG...]
//
// It starts each run the way Go's os/exec does (a vfork-style clone), so a
// figure holds the command and not a shell's fork of itself (3 ms here) or
// a date(1) process (5 ms). It prints "fails" when a first, untimed run of
// the command does not succeed (a peer that cannot run here), and runs
// after that count whatever their exit status. With -once there is no
// first run: for a command that differs each time, such as one creating a
// volume of a new name.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"time"
)

func main() {
	args := os.Args[1:]
	once := len(args) > 0 && args[0] == "-once"
	if once {
		args = args[1:]
	}
	if len(args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: timeit [-once] N CMD [ARG...]")
		os.Exit(2)
	}
	n, err := strconv.Atoi(args[0])
	if err != nil || n < 1 {
		fmt.Fprintf(os.Stderr, "timeit: N must be a positive count, not %q\n", args[0])
		os.Exit(2)
	}
	argv := args[1:]
	if !once {
		if err := command(argv).Run(); err != nil {
			fmt.Println("fails")
			return
		}
	}
	times := make([]time.Duration, 0, n)
	for range n {
		c := command(argv)
		start := time.Now()
		c.Run()
		times = append(times, time.Since(start))
	}
	fmt.Printf("%.1f\n", float64(median(times).Microseconds())/1000)
}

func command(argv []string) *exec.Cmd {
	c := exec.Command(argv[0], argv[1:]...)
	c.Stdin, c.Stdout, c.Stderr = nil, nil, nil // /dev/null
	return c
}

func median(ds []time.Duration) time.Duration {
	slices.Sort(ds)
	if len(ds)%2 == 1 {
		return ds[len(ds)/2]
	}
	return (ds[len(ds)/2-1] + ds[len(ds)/2]) / 2
}

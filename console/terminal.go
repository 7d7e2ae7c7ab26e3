// Package console is connwatch's output for a person at a terminal: the
// table printed on stdout when it is a terminal, and its terminal
// helpers.
package console

import (
	"golang.org/x/sys/unix"
)

// IsTerminal reports whether fd is a terminal.
func IsTerminal(fd uintptr) bool {
	_, err := unix.IoctlGetTermios(int(fd), unix.TCGETS)
	return err == nil
}

// Width is the terminal's width in columns, or 0 when fd is not a
// terminal or does not know its size.
func Width(fd uintptr) int {
	ws, err := unix.IoctlGetWinsize(int(fd), unix.TIOCGWINSZ)
	if err != nil {
		return 0
	}
	return int(ws.Col)
}

// ColorOK reports whether colour may be used on a terminal whose
// environment getenv reads: not when NO_COLOR is set to anything
// (no-color.org) or TERM is unset or "dumb".
func ColorOK(getenv func(string) string) bool {
	if getenv("NO_COLOR") != "" {
		return false
	}
	t := getenv("TERM")
	return t != "" && t != "dumb"
}

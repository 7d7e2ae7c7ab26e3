// Package bpf loads connwatch's kernel program, attaches it in the mode the
// kernel supports and hands out the raw samples it sends.
package bpf

//go:generate go tool bpf2go -tags linux -cc clang -cflags "-O2 -g -Wall -Werror" -target amd64,arm64 -go-package bpf -type event_ids -type stat_ids -type scopes -type sys_context_t connwatch connwatch.c -- -I./headers

// Package enrich attributes connwatch events to the process and container
// behind them.
//
// An Enricher reads, for an event's host pid, the process's executable,
// command line and start time from procfs, its owner from a passwd file, and
// its container (ID, runtime, Kubernetes pod UID) from its cgroup path. The
// result, an event.Workload, is cached per pid so that the event path
// usually touches no file at all. A namespace index maps (pid namespace,
// mount namespace) pairs to containers; it attributes events of processes
// that exited before they could be read, and it is the source the config
// stage computes BPF visibility entries from.
//
// A typical wiring:
//
//	e, err := enrich.New(enrich.Options{ProcRoot: "/host/proc", PasswdPath: "/host/etc/passwd"})
//	...
//	e.OnNewNamespace(func(n enrich.NSEntry) { select { case newNS <- n: default: } })
//	go func() { // background maintenance
//		for range time.Tick(5 * time.Second) {
//			e.ScanProc()
//			gone := e.PruneNamespaces()
//			e.Revalidate()
//			...
//		}
//	}()
//	for ev := range events {
//		e.Enrich(&ev) // never blocks on anything but a few procfs reads on a miss
//		...
//	}
package enrich

// Command soak runs the agent for a while at a steady connection rate,
// exporting to a local OTLP receiver, and reports its RSS, goroutines and
// counters at the start and at the end (`make soak`).
package main

import (
	"bufio"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/connwatch/connwatch/otel/otlptest"
)

func main() {
	bin := flag.String("bin", "bin/connwatch", "agent binary")
	duration := flag.Duration("duration", 10*time.Minute, "how long to run")
	rate := flag.Int("rate", 500, "connections per second")
	flag.Parse()
	if err := run(*bin, *duration, *rate); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

func run(bin string, duration time.Duration, rate int) error {
	r, err := otlptest.Listen()
	if err != nil {
		return err
	}
	defer r.Stop()

	metricsPort, err := freePort()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "connwatch-soak")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfg := filepath.Join(dir, "connwatch.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, "telemetry:\n  listen: 127.0.0.1:%d\n", metricsPort), 0o644); err != nil {
		return err
	}
	agent := exec.Command(bin, "-c", cfg)
	agent.Env = append(os.Environ(), "OTEL_EXPORTER_OTLP_ENDPOINT="+r.Endpoint())
	agent.Stderr = os.Stderr
	if err := agent.Start(); err != nil {
		return err
	}
	defer agent.Process.Signal(syscall.SIGTERM)

	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()

	if err := waitReady(metricsPort, 15*time.Second); err != nil {
		return err
	}
	start := snapshot(agent.Process.Pid, metricsPort)

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	report := time.NewTicker(time.Minute)
	defer report.Stop()
	deadline := time.After(duration)
	made := 0
loop:
	for {
		select {
		case <-tick.C:
			if c, err := net.Dial("tcp4", ln.Addr().String()); err == nil {
				c.Close()
				made++
			}
		case <-report.C:
			s := snapshot(agent.Process.Pid, metricsPort)
			fmt.Printf("%s connections %d rss %d KiB goroutines %v spans exported %v\n", time.Now().Format(time.TimeOnly),
				made, s.rssKiB, s.metrics["connwatch_goroutines"], s.metrics[`connwatch_records_exported_total{signal="traces"}`])
		case <-deadline:
			break loop
		case <-stop:
			break loop
		}
	}
	time.Sleep(3 * time.Second) // let the last batch go out
	end := snapshot(agent.Process.Pid, metricsPort)

	fmt.Printf("\nsoak: %d connections at %d/s for %v\n", made, rate, duration)
	fmt.Printf("%-60s %15s %15s\n", "", "start", "end")
	fmt.Printf("%-60s %15d %15d\n", "RSS (KiB)", start.rssKiB, end.rssKiB)
	keys := make([]string, 0, len(end.metrics))
	for k := range end.metrics {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if end.metrics[k] == 0 && start.metrics[k] == 0 {
			continue
		}
		fmt.Printf("%-60s %15v %15v\n", k, start.metrics[k], end.metrics[k])
	}
	fmt.Printf("%-60s %15s %15d\n", "spans received by the OTLP receiver", "", len(r.Spans()))
	return nil
}

type snap struct {
	rssKiB  int
	metrics map[string]float64
}

func snapshot(pid, port int) snap {
	s := snap{metrics: map[string]float64{}}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
				s.rssKiB, _ = strconv.Atoi(f[1])
			}
		}
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		return s
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			s.metrics[line[:i]] = v
		}
	}
	return s
}

func waitReady(port int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", port)); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("agent not ready within %v", timeout)
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"
)

// The OTLP receiver runs in a helper process (this binary, `receiver`
// subcommand) so that its CPU is not charged to the bench's measurements
// and the single-core user-space run keeps its core to itself. It answers
// the OTLP/gRPC trace, logs and metrics Export methods, like
// otel/otlptest, but counts records instead of keeping them (a 30 s run
// at full speed delivers millions), scanning the protobuf wire format
// rather than decoding it, so that it takes as little as possible of the
// CPU the agent and the load generator share with it.
//
// Protocol on the helper's stdin/stdout, one line each way:
//
//	helper:  "listening 127.0.0.1:PORT"
//	bench:   "port N"   count records whose server.port is N (0: all)
//	bench:   "counts"   helper answers one JSON line of counts
//	bench:   EOF        helper exits

// counts are the records a receiver got for the port it watches.
type counts struct {
	ClientSpans  uint64 `json:"client_spans"` // "tcp connect"
	ServerSpans  uint64 `json:"server_spans"` // "tcp accept"
	ConnectLogs  uint64 `json:"connect_logs"` // connwatch.tcp.connect
	ResultLogs   uint64 `json:"result_logs"`  // connwatch.tcp.connect.result
	AcceptLogs   uint64 `json:"accept_logs"`  // connwatch.tcp.accept
	CloseLogs    uint64 `json:"close_logs"`   // connwatch.tcp.close
	Spans        uint64 `json:"spans"`        // every span received, any port
	Logs         uint64 `json:"logs"`         // every log record received, any port
	Requests     uint64 `json:"requests"`
	MetricReqs   uint64 `json:"metric_requests"` // metrics export requests (one per workload and interval)
	MetricPoints uint64 `json:"metric_points"`   // their data points (any port)
}

func (c counts) add(o counts) counts {
	return counts{
		ClientSpans: c.ClientSpans + o.ClientSpans, ServerSpans: c.ServerSpans + o.ServerSpans,
		ConnectLogs: c.ConnectLogs + o.ConnectLogs, ResultLogs: c.ResultLogs + o.ResultLogs,
		AcceptLogs: c.AcceptLogs + o.AcceptLogs, CloseLogs: c.CloseLogs + o.CloseLogs, Spans: c.Spans + o.Spans, Logs: c.Logs + o.Logs,
		Requests: c.Requests + o.Requests, MetricReqs: c.MetricReqs + o.MetricReqs, MetricPoints: c.MetricPoints + o.MetricPoints,
	}
}

func (c counts) sub(o counts) counts {
	return counts{
		ClientSpans: c.ClientSpans - o.ClientSpans, ServerSpans: c.ServerSpans - o.ServerSpans,
		ConnectLogs: c.ConnectLogs - o.ConnectLogs, ResultLogs: c.ResultLogs - o.ResultLogs,
		AcceptLogs: c.AcceptLogs - o.AcceptLogs, CloseLogs: c.CloseLogs - o.CloseLogs, Spans: c.Spans - o.Spans, Logs: c.Logs - o.Logs,
		Requests: c.Requests - o.Requests, MetricReqs: c.MetricReqs - o.MetricReqs, MetricPoints: c.MetricPoints - o.MetricPoints,
	}
}

// records is every record of the watched port.
func (c counts) records() uint64 {
	return c.ClientSpans + c.ServerSpans + c.ConnectLogs + c.ResultLogs + c.AcceptLogs + c.CloseLogs
}

type countingReceiver struct {
	mu   sync.Mutex
	port int64
	c    counts
}

// OTLP/gRPC method names.
const (
	traceExport = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
	logsExport  = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
	// Metrics are counted by request and data point (any port): the
	// agent sends them once an interval, one request per workload.
	metricsExport = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
)

// rawCodec hands request bytes to the receiver's wire scanner instead of
// decoding them into proto structs, which would cost the receiver (on
// the same cores as the agent) several times more CPU. Responses are
// empty messages: a valid Export*ServiceResponse.
type rawCodec struct{}

type rawRequest struct {
	r      *countingReceiver
	method string
	err    error
}

func (rawCodec) Marshal(any) ([]byte, error) { return nil, nil }
func (rawCodec) Name() string                { return "proto" }

func (rawCodec) Unmarshal(data []byte, v any) error {
	req, ok := v.(*rawRequest)
	if !ok {
		return fmt.Errorf("unexpected message %T", v)
	}
	var c counts
	var err error
	req.r.mu.Lock()
	port := req.r.port
	req.r.mu.Unlock()
	switch req.method {
	case traceExport:
		err = scanTraces(data, port, &c)
	case logsExport:
		err = scanLogs(data, port, &c)
	case metricsExport:
		c.MetricReqs = 1
		err = scanMetrics(data, &c)
	default:
		return fmt.Errorf("unknown method %s", req.method)
	}
	if err != nil {
		return err
	}
	c.Requests = 1
	req.r.mu.Lock()
	req.r.c = req.r.c.add(c)
	req.r.mu.Unlock()
	return nil
}

func (r *countingReceiver) handle(_ any, stream grpc.ServerStream) error {
	method, _ := grpc.MethodFromServerStream(stream)
	if method != traceExport && method != logsExport && method != metricsExport {
		return grpcstatus.Errorf(codes.Unimplemented, "%s", method)
	}
	req := &rawRequest{r: r, method: method}
	if err := stream.RecvMsg(req); err != nil {
		return err
	}
	return stream.SendMsg(req)
}

// serveReceiver serves a countingReceiver on lis.
func serveReceiver(lis net.Listener) (*countingReceiver, *grpc.Server) {
	r := &countingReceiver{}
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(64<<20), grpc.ForceServerCodec(rawCodec{}),
		grpc.UnknownServiceHandler(r.handle))
	go srv.Serve(lis)
	return r, srv
}

func (r *countingReceiver) counts() counts {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.c
}

func (r *countingReceiver) watch(port int64) {
	r.mu.Lock()
	r.port = port
	r.mu.Unlock()
}

// receiverMain is the helper process.
func receiverMain() int {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "receiver:", err)
		return 1
	}
	r, srv := serveReceiver(lis)
	fmt.Printf("listening %s\n", lis.Addr())
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		cmd, arg, _ := strings.Cut(sc.Text(), " ")
		switch cmd {
		case "port":
			p, _ := strconv.ParseInt(arg, 10, 64)
			r.watch(p)
			fmt.Println("ok")
		case "counts":
			b, _ := json.Marshal(r.counts())
			fmt.Println(string(b))
		}
	}
	srv.Stop()
	return 0
}

// receiver is the bench's handle on the helper.
type receiver struct {
	*child
	addr string
	in   io.WriteCloser
	out  *bufio.Scanner
}

func startReceiver(dir string) (*receiver, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, "receiver")
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	c, err := startChild("OTLP receiver", cmd, filepath.Join(dir, "receiver.log"))
	if err != nil {
		return nil, err
	}
	r := &receiver{child: c, in: in, out: bufio.NewScanner(outPipe)}
	line, err := r.readLine(10 * time.Second)
	if err != nil {
		c.stop(time.Second)
		return nil, fmt.Errorf("OTLP receiver: %w", err)
	}
	addr, ok := strings.CutPrefix(line, "listening ")
	if !ok {
		c.stop(time.Second)
		return nil, fmt.Errorf("OTLP receiver: unexpected first line %q", line)
	}
	r.addr = addr
	return r, nil
}

func (r *receiver) endpoint() string { return "http://" + r.addr }

func (r *receiver) readLine(timeout time.Duration) (string, error) {
	ch := make(chan bool, 1)
	go func() { ch <- r.out.Scan() }()
	select {
	case ok := <-ch:
		if !ok {
			return "", fmt.Errorf("helper closed its output: %v", r.out.Err())
		}
		return r.out.Text(), nil
	case <-time.After(timeout):
		return "", fmt.Errorf("no answer from the helper within %s", timeout)
	}
}

func (r *receiver) watchPort(port int) error {
	if _, err := fmt.Fprintf(r.in, "port %d\n", port); err != nil {
		return err
	}
	_, err := r.readLine(5 * time.Second)
	return err
}

func (r *receiver) counts() (counts, error) {
	var c counts
	if _, err := fmt.Fprintln(r.in, "counts"); err != nil {
		return c, fmt.Errorf("OTLP receiver: %w", err)
	}
	line, err := r.readLine(5 * time.Second)
	if err != nil {
		return c, fmt.Errorf("OTLP receiver: %w", err)
	}
	err = json.Unmarshal([]byte(line), &c)
	return c, err
}

// settle waits until the receiver's counts stop changing for quiet, or
// until want records (of the watched port) arrived, or timeout.
func (r *receiver) settle(want uint64, base counts, quiet, timeout time.Duration) (counts, error) {
	deadline := time.Now().Add(timeout)
	last, err := r.counts()
	if err != nil {
		return last, err
	}
	lastChange := time.Now()
	for {
		if last.sub(base).records() >= want || time.Now().After(deadline) || time.Since(lastChange) >= quiet {
			return last, nil
		}
		time.Sleep(100 * time.Millisecond)
		c, err := r.counts()
		if err != nil {
			return last, err
		}
		if c != last {
			last, lastChange = c, time.Now()
		}
	}
}

func (r *receiver) close() {
	r.in.Close()
	select {
	case <-r.done:
	case <-time.After(3 * time.Second):
		r.stop(time.Second)
	}
}

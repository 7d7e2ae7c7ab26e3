package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// promMetrics are the samples of one scrape of the agent's /metrics,
// keyed by series ("name{labels}" as written).
type promMetrics map[string]float64

// scrapeMetrics reads http://addr/metrics.
func scrapeMetrics(addr string) (promMetrics, error) {
	if addr == "" {
		return nil, errNoMetrics
	}
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, fmt.Errorf("scraping the agent's /metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scraping the agent's /metrics: %s", resp.Status)
	}
	return parseMetrics(resp.Body)
}

var errNoMetrics = fmt.Errorf("the agent did not say where it serves /metrics")

// parseMetrics parses the Prometheus text format (samples without
// timestamps, as the agent writes them).
func parseMetrics(r io.Reader) (promMetrics, error) {
	m := promMetrics{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			return nil, fmt.Errorf("/metrics: malformed line %q", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("/metrics: malformed value in %q", line)
		}
		m[line[:i]] = v
	}
	return m, sc.Err()
}

// family returns the series of metric name, sorted.
func (m promMetrics) family(name string) []string {
	var ks []string
	for k := range m {
		if k == name || strings.HasPrefix(k, name+"{") {
			ks = append(ks, k)
		}
	}
	sort.Strings(ks)
	return ks
}

// sum adds up every series of metric name; false when it has none.
func (m promMetrics) sum(name string) (uint64, bool) {
	ks := m.family(name)
	var s float64
	for _, k := range ks {
		s += m[k]
	}
	return uint64(s + 0.5), len(ks) > 0
}

// nonZero lists the series of name whose value is not 0, as "labels=value".
func (m promMetrics) nonZero(name string) []string {
	var out []string
	for _, k := range m.family(name) {
		if v := m[k]; v != 0 {
			out = append(out, strings.TrimPrefix(k, name)+"="+strconv.FormatFloat(v, 'f', -1, 64))
		}
	}
	return out
}

// droppedMetric is the agent's counter of everything dropped, by stage
// and reason (reader queue, decode, export queue and failures, kernel).
const droppedMetric = "connwatch_dropped_total"

// dropSummary is what /metrics said about drops.
type dropSummary struct {
	Scraped  bool
	Err      error
	Dropped  uint64   // sum of connwatch_dropped_total
	NonZero  []string // its series that are not 0
	Lost     uint64   // connwatch_lost_samples_total (perf buffer lost records)
	Emitted  uint64   // connwatch_records_emitted_total
	Exported uint64   // connwatch_records_exported_total
}

func summarizeDrops(m promMetrics, err error) dropSummary {
	if err != nil {
		return dropSummary{Err: err}
	}
	d := dropSummary{Scraped: true}
	var ok bool
	if d.Dropped, ok = m.sum(droppedMetric); !ok {
		d.Scraped, d.Err = false, fmt.Errorf("/metrics has no %s", droppedMetric)
	}
	d.NonZero = m.nonZero(droppedMetric)
	d.Lost, _ = m.sum("connwatch_lost_samples_total")
	d.Emitted, _ = m.sum("connwatch_records_emitted_total")
	d.Exported, _ = m.sum("connwatch_records_exported_total")
	return d
}

// cell is the summary for a table cell.
func (d dropSummary) cell() string {
	if !d.Scraped {
		return "? (" + short(errOr(d.Err, errNoMeasure), 50) + ")"
	}
	s := group(d.Dropped)
	if len(d.NonZero) > 0 {
		s += " (" + strings.Join(d.NonZero, ", ") + ")"
	}
	return s
}

package config

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/connwatch/connwatch/bpf"
	"github.com/connwatch/connwatch/otel"
)

// pos is a 1-based line and column in a file.
type pos struct{ line, col int }

// origin is where a setting's value came from: a key of a file, or an
// environment variable.
type origin struct {
	file       string
	key, value pos    // in file
	env        string // the variable's name; "" for the file
}

// origins maps the path of a setting ("export.otlp.client_key",
// "visibility.rules[2].match") to where its value came from. A setting
// without an entry has its default or was set in code.
type origins map[string]origin

// problems collects what Validate finds, each blamed on the source of a
// setting.
type problems struct {
	src  origins
	errs []error
}

// add records the problem msg with the setting at path, reported under
// the name where (path or its section). atValue points a file position at
// the value rather than the key.
func (ps *problems) add(path, where string, atValue bool, msg string) {
	switch {
	case len(ps.errs) > maxErrors:
		return
	case len(ps.errs) == maxErrors:
		ps.errs = append(ps.errs, &Error{Msg: "too many errors"})
		return
	}
	o, ok := ps.src[path]
	switch {
	case ok && o.env != "":
		ps.errs = append(ps.errs, &EnvError{Var: o.env, Msg: msg})
	case ok:
		at := o.key
		if atValue {
			at = o.value
		}
		ps.errs = append(ps.errs, &Error{File: o.file, Line: at.line, Column: at.col, Msg: where + ": " + msg})
	default:
		ps.errs = append(ps.errs, &Error{Msg: where + ": " + msg})
	}
}

// value records the problem msg, if any, with the value of the setting
// at path.
func (ps *problems) value(path, msg string) {
	if msg != "" {
		ps.add(path, path, true, msg)
	}
}

// name records the problem err of parsing a name, if any.
func (ps *problems) name(path string, err error) {
	if err != nil {
		ps.add(path, path, true, err.Error())
	}
}

// Validate checks c as a whole, whatever set each setting: the rules
// that relate settings to each other (the selectors of a rule's match, a
// client certificate with its key), which hold only once every source
// has been applied, and the value of every setting, which the file's walk
// and ApplyEnv have checked already for the values they set. Run it after
// the last override.
//
// Each problem is blamed on a setting and reported where that setting
// came from: as an [*Error] at its file position, as an [*EnvError]
// naming the variable that set it, or as an [*Error] without a position
// for a setting made in code. The problems (up to 100, then a final "too
// many errors") are joined with errors.Join; nil means c is usable.
func (c *Config) Validate() error {
	ps := &problems{src: c.src}
	c.Probe.validate(ps)
	_, err := bpf.ParseMonitor(string(c.Monitor))
	ps.name("monitor", err)
	c.Visibility.validate(ps)
	c.Filters.validate(ps)
	c.Export.validate(ps)
	ps.value("telemetry.listen", checkListen(c.Telemetry.Listen))
	ps.value("enrich.proc_root", checkNonEmpty(c.Enrich.ProcRoot))
	return errors.Join(ps.errs...)
}

func (p *Probe) validate(ps *problems) {
	_, err := bpf.ParseMode(string(p.Attach))
	ps.name("probe.attach", err)
	_, err = bpf.ParseTransport(string(p.Transport))
	ps.name("probe.transport", err)
	ps.value("probe.max_connections", checkMaxConnections(strconv.Itoa(p.MaxConnections)))
}

func (v *Visibility) validate(ps *problems) {
	validateScopes(ps, "visibility.host", v.Host)
	validateScopes(ps, "visibility.default", v.Default)
	if n := len(v.Rules); n > MaxRules {
		ps.add("visibility.rules", "visibility.rules", true,
			fmt.Sprintf("%d rules, more than the %d allowed (match many namespaces with one glob)", n, MaxRules))
	}
	for i := range v.Rules {
		where := fmt.Sprintf("visibility.rules[%d]", i)
		v.Rules[i].Match.validate(ps, where+".match")
		validateScopes(ps, where+".scopes", v.Rules[i].Scopes)
	}
}

func validateScopes(ps *problems, path string, scopes []string) {
	for i, s := range scopes {
		if msg := checkScope(s, scopes[:i]); msg != "" {
			ps.add(path, fmt.Sprintf("%s[%d]", path, i), true, msg)
		}
	}
}

// validate checks that m has exactly one kind of selector, and the
// selectors' values; path is the match's.
func (m *Match) validate(ps *problems, path string) {
	var kinds []string
	if m.ContainerID != "" {
		kinds = append(kinds, "container_id")
		ps.value(path+".container_id", checkGlob(m.ContainerID))
	}
	if m.Cgroup != "" {
		kinds = append(kinds, "cgroup")
		ps.value(path+".cgroup", checkGlob(m.Cgroup))
	}
	pid, mnt := m.PidNS != 0, m.MntNS != 0
	switch {
	case pid && !mnt:
		ps.add(path+".pid_ns", path, false, "pid_ns and mnt_ns must be given together (mnt_ns is missing)")
		return
	case mnt && !pid:
		ps.add(path+".mnt_ns", path, false, "pid_ns and mnt_ns must be given together (pid_ns is missing)")
		return
	case pid && mnt:
		kinds = append(kinds, "pid_ns+mnt_ns")
	}
	switch len(kinds) {
	case 0:
		ps.add(path, path, true, "give one of container_id, cgroup, or pid_ns+mnt_ns")
	case 1:
		if m.PidNS == bpf.DefaultKey.PidNS && m.MntNS == bpf.DefaultKey.MntNS {
			ps.add(path, path, true, fmt.Sprintf("pid_ns %d and mnt_ns %d are reserved for the default entry", m.PidNS, m.MntNS))
		}
	default:
		ps.add(path, path, true, fmt.Sprintf("give only one of container_id, cgroup, or pid_ns+mnt_ns (got %s)", strings.Join(kinds, " and ")))
	}
}

func (e *Export) validate(ps *problems) {
	e.OTLP.validate(ps)
	ps.value("export.flush_timeout", checkDuration(e.FlushTimeout.String(), e.FlushTimeout))
	ps.value("export.queue.memory_mib", checkSize(strconv.Itoa(e.Queue.MemoryMiB)))
	ps.value("export.queue.disk_mib", checkSize(strconv.Itoa(e.Queue.DiskMiB)))
	ps.value("export.trace_key", checkTraceKey(e.TraceKey))
}

func (o *OTLP) validate(ps *problems) {
	const sect = "export.otlp"
	ps.value(sect+".endpoint", checkEndpoint(o.Endpoint))
	ps.value(sect+".traces_endpoint", checkEndpoint(o.TracesEndpoint))
	ps.value(sect+".logs_endpoint", checkEndpoint(o.LogsEndpoint))
	for _, name := range slices.Sorted(maps.Keys(o.Headers)) {
		val := o.Headers[name]
		if msg := checkHeaderName(name); msg != "" {
			ps.add(sect+".headers", sect+".headers", true, msg)
		} else if msg := checkHeaderValue(val); msg != "" {
			ps.add(sect+".headers", fmt.Sprintf("%s.headers[%q]", sect, name), true, msg)
		}
	}
	ps.value(sect+".compression", checkCompression(o.Compression))
	ps.value(sect+".timeout", checkDuration(o.Timeout.String(), o.Timeout))
	// The half that is given is to blame: the file or the variable that
	// set it is where the other half belongs.
	if err := otel.CheckClientPair(o.ClientCertificate, o.ClientKey); err != nil {
		given := sect + ".client_certificate"
		if o.ClientCertificate == "" {
			given = sect + ".client_key"
		}
		ps.add(given, sect, false, err.Error())
	}
}

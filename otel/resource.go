package otel

import (
	"cmp"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/connwatch/connwatch/event"
)

// Resource attribute keys without a semantic convention.
const (
	AttrPidNS  = attribute.Key("connwatch.pid_ns") // pid namespace inum, 0 for the host
	AttrMntNS  = attribute.Key("connwatch.mnt_ns") // mount namespace inum, 0 for the host
	AttrCgroup = attribute.Key("connwatch.cgroup") // cgroup path of the process
)

// UnknownService is service.name when an event names no executable.
const UnknownService = "unknown_service"

// ServiceName returns the service.name of the workload behind ev, the
// first that is known of: the workload's own name for itself (its pod's
// app.kubernetes.io/name label, its compose service label), its
// container's name, the executable name (Workload.ExeName, else the
// event's comm), else UnknownService.
//
// It is deliberately not unique per process or container: replicas of a
// deployment, restarts of a container and repeated runs of a command
// share one service in trace back ends (Jaeger lists services by
// service.name), while process.pid, container.id and k8s.pod.uid keep the
// instances apart.
func ServiceName(ev *event.Event) string {
	w := ev.Workload
	if w != nil && w.Container != nil {
		if c := w.Container; c.Service != "" {
			return c.Service
		} else if c.Name != "" {
			return c.Name
		}
	}
	if w != nil && w.ExeName != "" {
		return w.ExeName
	}
	if ev.Comm != "" {
		return ev.Comm
	}
	return UnknownService
}

// hostAttributes returns the attributes of the host connwatch runs on,
// shared by every resource: host.name, host.id and os.type.
func hostAttributes(o *Options) []attribute.KeyValue {
	attrs := []attribute.KeyValue{semconv.OSTypeLinux}
	name := o.HostName
	if name == "" {
		name, _ = os.Hostname()
	}
	if name != "" {
		attrs = append(attrs, semconv.HostName(name))
	}
	id := o.HostID
	if id == "" {
		path := o.MachineIDFile
		if path == "" {
			path = DefaultMachineIDFile
		}
		if b, err := os.ReadFile(path); err == nil {
			id = strings.TrimSpace(string(b))
		}
	}
	if id != "" {
		attrs = append(attrs, semconv.HostID(id))
	}
	return attrs
}

// ParseResourceAttributes parses the value of OTEL_RESOURCE_ATTRIBUTES:
// comma-separated key=value pairs whose keys and values are trimmed of
// spaces and whose values are percent-decoded. Empty members (as left by
// a trailing comma) are skipped. Any malformed member makes the whole
// value invalid, as the specification asks; the error lists them all.
func ParseResourceAttributes(s string) ([]attribute.KeyValue, error) {
	var attrs []attribute.KeyValue
	var errs []error
	for member := range strings.SplitSeq(s, ",") {
		if strings.TrimSpace(member) == "" {
			continue
		}
		k, v, ok := strings.Cut(member, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			errs = append(errs, fmt.Errorf("%q is not key=value", member))
			continue
		}
		val, err := url.PathUnescape(strings.TrimSpace(v))
		if err != nil {
			errs = append(errs, fmt.Errorf("%q: invalid percent-encoding", member))
			continue
		}
		attrs = append(attrs, attribute.String(k, val))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return attrs, nil
}

// baseAttributes returns the attributes every resource starts with: the
// host's, then those of OTEL_RESOURCE_ATTRIBUTES, which therefore
// override host.name, host.id and os.type but not the workload's
// attributes appended after them.
func baseAttributes(o *Options) ([]attribute.KeyValue, error) {
	attrs := hostAttributes(o)
	env, err := ParseResourceAttributes(o.getenv(EnvResourceAttributes))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", EnvResourceAttributes, err)
	}
	return append(attrs, env...), nil
}

// appendWorkloadAttributes appends the attributes of the process and
// container behind ev. Later attributes win over earlier ones of the same
// key when the resource is built.
func appendWorkloadAttributes(dst []attribute.KeyValue, ev *event.Event, omitArgs bool) []attribute.KeyValue {
	w := ev.Workload
	if w == nil {
		w = &event.Workload{}
	}
	name := ServiceName(ev)
	dst = append(dst,
		semconv.ServiceName(name),
		semconv.ProcessPID(int(ev.HostPID)),
		semconv.ProcessParentPID(int(ev.HostPPID)),
	)
	if !ev.Host() {
		dst = append(dst, semconv.ProcessVpid(int(ev.PID)))
	}
	if exe := cmp.Or(w.ExeName, ev.Comm); exe != "" {
		dst = append(dst, semconv.ProcessExecutableName(exe))
	}
	if w.ExePath != "" {
		dst = append(dst, semconv.ProcessExecutablePath(w.ExePath))
	}
	if len(w.Args) > 0 {
		dst = append(dst, semconv.ProcessCommand(w.Args[0]))
		if !omitArgs {
			dst = append(dst, semconv.ProcessCommandArgs(w.Args...))
		}
	}
	if w.Owner != "" {
		dst = append(dst, semconv.ProcessOwner(w.Owner))
	}
	dst = append(dst, semconv.ProcessUserID(int(ev.UID)))
	if !w.StartTime.IsZero() {
		dst = append(dst, semconv.ProcessCreationTime(w.StartTime.UTC().Format(time.RFC3339Nano)))
	}
	if w.ContainerID != "" {
		dst = append(dst, semconv.ContainerID(w.ContainerID))
	}
	if w.Runtime != "" {
		dst = append(dst, semconv.ContainerRuntimeName(w.Runtime))
	}
	if w.PodUID != "" {
		dst = append(dst, semconv.K8SPodUID(w.PodUID))
	}
	if c := w.Container; c != nil {
		dst = appendContainerAttributes(dst, c)
	}
	dst = append(dst,
		AttrPidNS.Int64(int64(ev.PidNS)),
		AttrMntNS.Int64(int64(ev.MntNS)),
	)
	if w.Cgroup != "" {
		dst = append(dst, AttrCgroup.String(w.Cgroup))
	}
	return dst
}

// appendContainerAttributes appends what the container runtime said.
func appendContainerAttributes(dst []attribute.KeyValue, c *event.ContainerMeta) []attribute.KeyValue {
	if c.Name != "" {
		dst = append(dst, semconv.ContainerName(c.Name))
	}
	if c.ImageName != "" {
		dst = append(dst, semconv.ContainerImageName(c.ImageName))
	}
	if len(c.ImageTags) > 0 {
		dst = append(dst, semconv.ContainerImageTags(c.ImageTags...))
	}
	if c.PodName != "" {
		dst = append(dst, semconv.K8SPodName(c.PodName))
	}
	if c.PodNamespace != "" {
		dst = append(dst, semconv.K8SNamespaceName(c.PodNamespace))
	}
	if c.K8sContainer != "" {
		dst = append(dst, semconv.K8SContainerName(c.K8sContainer))
	}
	// service.namespace qualifies service.name: the compose project, or
	// the pod's namespace.
	if ns := cmp.Or(c.ComposeProject, c.PodNamespace); ns != "" {
		dst = append(dst, semconv.ServiceNamespace(ns))
	}
	return dst
}

// resourceKey identifies the resource of an event. It holds every input
// of appendWorkloadAttributes that can differ between two processes or
// across an execve, so that equal keys mean equal resources (up to the
// argv, owner and cgroup, which do not change without one of the key's
// fields changing in practice). Building and hashing it does not allocate.
type resourceKey struct {
	hostPID, hostPPID, pid, uid uint32
	pidNS, mntNS                uint32
	start                       int64 // process start, Unix ns; 0 if unknown
	name                        string
	exePath                     string
	containerID                 string
	container                   *event.ContainerMeta // shared and immutable: equal pointers, equal metadata
}

func keyOf(ev *event.Event) resourceKey {
	k := resourceKey{
		hostPID: ev.HostPID, hostPPID: ev.HostPPID, pid: ev.PID, uid: ev.UID,
		pidNS: ev.PidNS, mntNS: ev.MntNS,
		name: ServiceName(ev),
	}
	if w := ev.Workload; w != nil {
		if !w.StartTime.IsZero() {
			k.start = w.StartTime.UnixNano()
		}
		k.exePath = w.ExePath
		k.containerID = w.ContainerID
		k.container = w.Container
	}
	return k
}

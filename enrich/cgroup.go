package enrich

import (
	"bytes"
	"strings"
)

// Runtime names reported in CgroupInfo.Runtime and event.Workload.Runtime.
const (
	RuntimeDocker     = "docker"
	RuntimeContainerd = "containerd"
	RuntimeCRIO       = "cri-o"
	RuntimePodman     = "podman"
)

// CgroupInfo is what a process's cgroup membership says about the container
// it runs in. A zero field means unknown.
type CgroupInfo struct {
	// Path is the cgroup path the other fields were taken from: the cgroup
	// v2 path, else the name=systemd path, else a v1 controller's path.
	Path string
	// ContainerID is the full 64-hex container ID.
	ContainerID string
	// Runtime is the container runtime the path names (RuntimeDocker, ...);
	// empty when the layout does not say, e.g. /kubepods/<qos>/pod<uid>/<id>
	// written by the cgroupfs driver.
	Runtime string
	// PodUID is the Kubernetes pod UID in its dashed form.
	PodUID string
}

// scopePrefixes maps the prefix of a "<prefix>-<64hex>[.scope]" cgroup
// directory to the runtime that creates it. An unknown prefix still yields
// the container ID, with an empty runtime.
var scopePrefixes = map[string]string{
	"docker":         RuntimeDocker,
	"cri-containerd": RuntimeContainerd,
	"containerd":     RuntimeContainerd,
	"nerdctl":        RuntimeContainerd,
	"crio":           RuntimeCRIO,
	"libpod":         RuntimePodman,
	"podman":         RuntimePodman,
}

// ParseCgroup parses the content of /proc/<pid>/cgroup (cgroup v1, v2 or
// hybrid) and extracts the container behind it.
//
// Lines are "hierarchy-ID:controller-list:path". Candidate paths are tried in
// this order: the v2 line ("0::") unless its path is "/", the name=systemd
// line, then each v1 controller line; paths equal to "/" are skipped. The
// first candidate that names a container wins; when none does, the first
// candidate naming a pod, else the first candidate, gives Path. Content with
// only root paths yields Path "/".
//
// ParseCgroup is pure and safe for concurrent use.
func ParseCgroup(content []byte) CgroupInfo {
	var v2, systemd string
	var root bool
	var others []string
	for len(content) > 0 {
		var line []byte
		line, content, _ = bytes.Cut(content, []byte{'\n'})
		line = bytes.TrimSpace(line)
		id, rest, ok := bytes.Cut(line, []byte{':'})
		if !ok {
			continue
		}
		ctrl, path, ok := bytes.Cut(rest, []byte{':'})
		if !ok || len(path) == 0 {
			continue
		}
		if string(path) == "/" {
			root = true
			continue
		}
		switch {
		case string(id) == "0" && len(ctrl) == 0:
			if v2 == "" {
				v2 = string(path)
			}
		case hasController(ctrl, "name=systemd"):
			if systemd == "" {
				systemd = string(path)
			}
		default:
			others = append(others, string(path))
		}
	}
	cands := make([]string, 0, 2+len(others))
	if v2 != "" {
		cands = append(cands, v2)
	}
	if systemd != "" {
		cands = append(cands, systemd)
	}
	cands = append(cands, others...)

	var firstPod CgroupInfo
	for _, c := range cands {
		info := ParseCgroupPath(c)
		if info.ContainerID != "" {
			return info
		}
		if info.PodUID != "" && firstPod.PodUID == "" {
			firstPod = info
		}
	}
	switch {
	case firstPod.PodUID != "":
		return firstPod
	case len(cands) > 0:
		return CgroupInfo{Path: cands[0]}
	case root:
		return CgroupInfo{Path: "/"}
	}
	return CgroupInfo{}
}

// hasController reports whether the comma-separated controller list holds
// name.
func hasController(list []byte, name string) bool {
	for len(list) > 0 {
		var c []byte
		c, list, _ = bytes.Cut(list, []byte{','})
		if string(c) == name {
			return true
		}
	}
	return false
}

// ParseCgroupPath extracts the container ID, runtime and pod UID from one
// cgroup path. Recognised layouts, anywhere in the path (a reader in its own
// cgroup namespace sees host paths prefixed with "/.."):
//
//	/docker/<id>                                      docker, cgroupfs driver
//	/system.slice/docker-<id>.scope                   docker, systemd driver
//	/kubepods/<qos>/pod<uid>/<id>                     any CRI, cgroupfs driver (runtime unknown)
//	/kubepods.slice/.../kubepods-<qos>-pod<uid_with_underscores>.slice/cri-containerd-<id>.scope
//	/kubepods.slice/.../crio-<id>.scope               cri-o (crio-conmon-<id>.scope is not a container)
//	/machine.slice/libpod-<id>.scope[/container]      podman (libpod-conmon-<id>.scope is not a container)
//	.../<prefix>-<id>.scope                           other systemd scopes, runtime by prefix
//	/<namespace>/<id>                                 containerd without a cgroup parent (/k8s.io/<id>, /default/<id>)
//
// When several components name a container (nested containers, e.g. kind
// nodes), the innermost wins. The pod UID is taken from a "pod<uid>"
// component below a kubepods component; both the dashed (cgroupfs) and the
// underscored (systemd) spelling and 32-hex static-pod UIDs are accepted, and
// it is returned dashed.
//
// ParseCgroupPath is pure and safe for concurrent use.
func ParseCgroupPath(path string) CgroupInfo {
	info := CgroupInfo{Path: path}
	kube := false
	parent := ""
	depth := 0 // components before comp
	rest := path
	for rest != "" {
		var comp string
		comp, rest, _ = strings.Cut(rest, "/")
		if comp == "" || comp == ".." || comp == "." {
			continue
		}
		if !kube && strings.Contains(comp, "kubepods") {
			kube = true
		}
		if kube {
			if uid, ok := podUIDFromComponent(comp); ok {
				info.PodUID = uid
			}
		}
		if id, rt, ok := containerFromComponent(comp, parent); ok {
			info.ContainerID, info.Runtime = id, rt
			// /<namespace>/<id>: containerd's layout for a container with
			// no cgroup parent (ctr run, nerdctl, CRI without a kubelet:
			// /k8s.io/<id>). Docker's cgroupfs layout is /docker/<id>.
			if rt == "" && depth == 1 && !kube && isHexLen(comp, 64) {
				info.Runtime = RuntimeContainerd
			}
		}
		parent = comp
		depth++
	}
	return info
}

// containerFromComponent recognises one cgroup directory name as a
// container's: a bare 64-hex ID (runtime docker when its parent is "docker",
// else unknown) or "<prefix>-<64hex>" with an optional ".scope" suffix.
func containerFromComponent(comp, parent string) (id, runtime string, ok bool) {
	s := strings.TrimSuffix(comp, ".scope")
	if isHexLen(s, 64) {
		if parent == "docker" {
			return s, RuntimeDocker, true
		}
		return s, "", true
	}
	i := strings.LastIndexByte(s, '-')
	if i < 0 || !isHexLen(s[i+1:], 64) {
		return "", "", false
	}
	prefix := s[:i]
	// crio-conmon-<id>.scope and libpod-conmon-<id>.scope hold the runtime's
	// monitor process, which runs on the host, not in the container.
	if prefix == "conmon" || strings.HasSuffix(prefix, "-conmon") {
		return "", "", false
	}
	return s[i+1:], scopePrefixes[prefix], true
}

// podUIDFromComponent extracts a pod UID from "pod<uid>" or
// "kubepods[-<qos>]-pod<uid>.slice".
func podUIDFromComponent(comp string) (string, bool) {
	s := strings.TrimSuffix(comp, ".slice")
	var cand string
	switch {
	case strings.HasPrefix(s, "pod"):
		cand = s[3:]
	default:
		i := strings.LastIndex(s, "-pod")
		if i < 0 {
			return "", false
		}
		cand = s[i+4:]
	}
	if isHexLen(cand, 32) {
		return cand, true
	}
	if len(cand) != 36 {
		return "", false
	}
	sep := cand[8]
	if sep != '-' && sep != '_' {
		return "", false
	}
	for i := 0; i < len(cand); i++ {
		c := cand[i]
		switch i {
		case 8, 13, 18, 23:
			if c != sep {
				return "", false
			}
		default:
			if !isLowerHex(c) {
				return "", false
			}
		}
	}
	if sep == '_' {
		cand = strings.ReplaceAll(cand, "_", "-")
	}
	return cand, true
}

func isHexLen(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isLowerHex(s[i]) {
			return false
		}
	}
	return true
}

func isLowerHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f'
}

package enrich

import (
	"strings"
	"testing"
)

// Container IDs and pod UIDs used by the cgroup samples.
const (
	idA = "3f7c2d9e8b1a4c6d5e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d"
	idB = "b1946ac92492d2347c6235b4d2611184c8b3a0c6d2c7f2f1e4b6a3d5c9e8f7a6"
	idC = "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8"
	idD = "d2a84f4b8b650937ec8f73cd8be2c74add5a911ba64df27458ed8229da804a26"

	uidDashed     = "1b2c3d4e-5f60-4718-93a4-b5c6d7e8f901"
	uidUnderscore = "1b2c3d4e_5f60_4718_93a4_b5c6d7e8f901"
	staticPodUID  = "6a2d8e6e5f4b3c2d1e0f9a8b7c6d5e4f" // config-hash UID of a static pod
)

func TestParseCgroup(t *testing.T) {
	v1 := func(path string) string {
		// A full cgroup v1 file as written by a 4.x/5.x kernel, every
		// controller at the same path.
		var b strings.Builder
		for _, l := range []string{
			"12:hugetlb:", "11:cpuset:", "10:net_cls,net_prio:", "9:devices:", "8:freezer:",
			"7:perf_event:", "6:memory:", "5:blkio:", "4:pids:", "3:cpu,cpuacct:", "2:rdma:",
			"1:name=systemd:",
		} {
			b.WriteString(l + path + "\n")
		}
		return b.String()
	}
	tests := []struct {
		name    string
		content string
		want    CgroupInfo
	}{
		// Docker.
		{"docker v2 systemd driver",
			"0::/system.slice/docker-" + idA + ".scope\n",
			CgroupInfo{Path: "/system.slice/docker-" + idA + ".scope", ContainerID: idA, Runtime: "docker"}},
		{"docker v2 cgroupfs driver",
			"0::/docker/" + idA + "\n",
			CgroupInfo{Path: "/docker/" + idA, ContainerID: idA, Runtime: "docker"}},
		{"docker v1 cgroupfs driver",
			v1("/docker/" + idB),
			CgroupInfo{Path: "/docker/" + idB, ContainerID: idB, Runtime: "docker"}},
		{"docker hybrid, unified at root",
			v1("/docker/"+idB) + "0::/\n",
			CgroupInfo{Path: "/docker/" + idB, ContainerID: idB, Runtime: "docker"}},
		{"docker hybrid systemd driver",
			v1("/system.slice/docker-"+idA+".scope") + "0::/system.slice/docker-" + idA + ".scope\n",
			CgroupInfo{Path: "/system.slice/docker-" + idA + ".scope", ContainerID: idA, Runtime: "docker"}},
		{"docker v1, only controllers name it",
			"12:memory:/docker/" + idC + "\n11:cpu,cpuacct:/docker/" + idC + "\n1:name=systemd:/\n0::/\n",
			CgroupInfo{Path: "/docker/" + idC, ContainerID: idC, Runtime: "docker"}},

		// containerd without a cgroup parent.
		{"containerd CRI without a kubelet",
			v1("/k8s.io/" + idA),
			CgroupInfo{Path: "/k8s.io/" + idA, ContainerID: idA, Runtime: "containerd"}},
		{"ctr run, default namespace, v2",
			"0::/default/" + idB + "\n",
			CgroupInfo{Path: "/default/" + idB, ContainerID: idB, Runtime: "containerd"}},
		{"containerd namespace seen from a cgroup namespace",
			"0::/../k8s.io/" + idB + "\n",
			CgroupInfo{Path: "/../k8s.io/" + idB, ContainerID: idB, Runtime: "containerd"}},
		{"a bare ID deeper is not containerd's layout",
			"0::/some/where/" + idB + "\n",
			CgroupInfo{Path: "/some/where/" + idB, ContainerID: idB}},

		// containerd / cri-containerd under Kubernetes.
		{"k8s containerd systemd driver burstable",
			"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidUnderscore + ".slice/cri-containerd-" + idC + ".scope\n",
			CgroupInfo{Path: "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidUnderscore + ".slice/cri-containerd-" + idC + ".scope",
				ContainerID: idC, Runtime: "containerd", PodUID: uidDashed}},
		{"k8s containerd systemd driver guaranteed",
			"0::/kubepods.slice/kubepods-pod" + uidUnderscore + ".slice/cri-containerd-" + idD + ".scope\n",
			CgroupInfo{Path: "/kubepods.slice/kubepods-pod" + uidUnderscore + ".slice/cri-containerd-" + idD + ".scope",
				ContainerID: idD, Runtime: "containerd", PodUID: uidDashed}},
		{"k8s static pod, hash UID",
			"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + staticPodUID + ".slice/cri-containerd-" + idA + ".scope\n",
			CgroupInfo{Path: "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + staticPodUID + ".slice/cri-containerd-" + idA + ".scope",
				ContainerID: idA, Runtime: "containerd", PodUID: staticPodUID}},
		{"k8s cgroupfs driver v1 bare id",
			v1("/kubepods/burstable/pod" + uidDashed + "/" + idB),
			CgroupInfo{Path: "/kubepods/burstable/pod" + uidDashed + "/" + idB, ContainerID: idB, PodUID: uidDashed}},
		{"k8s cgroupfs driver v2 besteffort bare id",
			"0::/kubepods/besteffort/pod" + uidDashed + "/" + idC + "\n",
			CgroupInfo{Path: "/kubepods/besteffort/pod" + uidDashed + "/" + idC, ContainerID: idC, PodUID: uidDashed}},
		{"k8s cgroupfs driver guaranteed bare id",
			"0::/kubepods/pod" + uidDashed + "/" + idD + "\n",
			CgroupInfo{Path: "/kubepods/pod" + uidDashed + "/" + idD, ContainerID: idD, PodUID: uidDashed}},
		{"k8s seen from the agent's own cgroup namespace",
			"0::/../../../kubepods-besteffort.slice/kubepods-besteffort-pod" + uidUnderscore + ".slice/cri-containerd-" + idA + ".scope\n",
			CgroupInfo{Path: "/../../../kubepods-besteffort.slice/kubepods-besteffort-pod" + uidUnderscore + ".slice/cri-containerd-" + idA + ".scope",
				ContainerID: idA, Runtime: "containerd", PodUID: uidDashed}},
		{"k8s cri-dockerd systemd driver",
			"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidUnderscore + ".slice/docker-" + idB + ".scope\n",
			CgroupInfo{Path: "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidUnderscore + ".slice/docker-" + idB + ".scope",
				ContainerID: idB, Runtime: "docker", PodUID: uidDashed}},
		{"kind node: innermost container wins",
			"0::/system.slice/docker-" + idA + ".scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod" + uidUnderscore + ".slice/cri-containerd-" + idB + ".scope\n",
			CgroupInfo{Path: "/system.slice/docker-" + idA + ".scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod" + uidUnderscore + ".slice/cri-containerd-" + idB + ".scope",
				ContainerID: idB, Runtime: "containerd", PodUID: uidDashed}},
		{"nerdctl systemd scope",
			"0::/system.slice/nerdctl-" + idC + ".scope\n",
			CgroupInfo{Path: "/system.slice/nerdctl-" + idC + ".scope", ContainerID: idC, Runtime: "containerd"}},

		// CRI-O.
		{"cri-o systemd driver v2",
			"0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidUnderscore + ".slice/crio-" + idD + ".scope\n",
			CgroupInfo{Path: "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidUnderscore + ".slice/crio-" + idD + ".scope",
				ContainerID: idD, Runtime: "cri-o", PodUID: uidDashed}},
		{"cri-o container subcgroup",
			"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidUnderscore + ".slice/crio-" + idD + ".scope/container\n",
			CgroupInfo{Path: "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidUnderscore + ".slice/crio-" + idD + ".scope/container",
				ContainerID: idD, Runtime: "cri-o", PodUID: uidDashed}},
		{"cri-o cgroupfs driver v1",
			v1("/kubepods/besteffort/pod" + uidDashed + "/crio-" + idC),
			CgroupInfo{Path: "/kubepods/besteffort/pod" + uidDashed + "/crio-" + idC, ContainerID: idC, Runtime: "cri-o", PodUID: uidDashed}},
		{"cri-o conmon is not the container",
			"0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidUnderscore + ".slice/crio-conmon-" + idD + ".scope\n",
			CgroupInfo{Path: "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidUnderscore + ".slice/crio-conmon-" + idD + ".scope",
				PodUID: uidDashed}},

		// Podman.
		{"podman rootful v2",
			"0::/machine.slice/libpod-" + idA + ".scope\n",
			CgroupInfo{Path: "/machine.slice/libpod-" + idA + ".scope", ContainerID: idA, Runtime: "podman"}},
		{"podman rootful v2 container subcgroup",
			"0::/machine.slice/libpod-" + idA + ".scope/container\n",
			CgroupInfo{Path: "/machine.slice/libpod-" + idA + ".scope/container", ContainerID: idA, Runtime: "podman"}},
		{"podman rootless",
			"0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + idB + ".scope\n",
			CgroupInfo{Path: "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + idB + ".scope", ContainerID: idB, Runtime: "podman"}},
		{"podman conmon is not the container",
			"0::/machine.slice/libpod-conmon-" + idA + ".scope\n",
			CgroupInfo{Path: "/machine.slice/libpod-conmon-" + idA + ".scope"}},
		{"podman cgroupfs v1",
			v1("/libpod_parent/libpod-" + idC),
			CgroupInfo{Path: "/libpod_parent/libpod-" + idC, ContainerID: idC, Runtime: "podman"}},

		// Other systemd scopes and bare IDs.
		{"unknown runtime scope",
			"0::/system.slice/acme-" + idD + ".scope\n",
			CgroupInfo{Path: "/system.slice/acme-" + idD + ".scope", ContainerID: idD}},
		{"ECS task, bare id",
			"0::/ecs/8d6c4a2e1f0b4c9d8e7f6a5b4c3d2e1f/" + idB + "\n",
			CgroupInfo{Path: "/ecs/8d6c4a2e1f0b4c9d8e7f6a5b4c3d2e1f/" + idB, ContainerID: idB}},

		// Host processes.
		{"host init", "0::/init.scope\n", CgroupInfo{Path: "/init.scope"}},
		{"host service", "0::/system.slice/sshd.service\n", CgroupInfo{Path: "/system.slice/sshd.service"}},
		{"host user session", "0::/user.slice/user-1000.slice/session-3.scope\n",
			CgroupInfo{Path: "/user.slice/user-1000.slice/session-3.scope"}},
		{"host v1 prefers name=systemd",
			"4:memory:/user.slice\n1:name=systemd:/user.slice/user-1000.slice/session-2.scope\n0::/\n",
			CgroupInfo{Path: "/user.slice/user-1000.slice/session-2.scope"}},
		{"host v1 systemd services", v1("/system.slice/containerd.service"),
			CgroupInfo{Path: "/system.slice/containerd.service"}},
		{"pod-like name outside kubepods", "0::/system.slice/pod" + uidDashed + ".service\n",
			CgroupInfo{Path: "/system.slice/pod" + uidDashed + ".service"}},
		{"v2 root", "0::/\n", CgroupInfo{Path: "/"}},
		{"empty", "", CgroupInfo{}},
		{"garbage", "not a cgroup file\n\n::\n", CgroupInfo{}},
		{"uppercase hex is not an id", "0::/docker/" + strings.ToUpper(idA) + "\n",
			CgroupInfo{Path: "/docker/" + strings.ToUpper(idA)}},
		{"63 hex is not an id", "0::/docker/" + idA[:63] + "\n", CgroupInfo{Path: "/docker/" + idA[:63]}},
		{"no trailing newline, CRLF", "0::/system.slice/docker-" + idA + ".scope\r",
			CgroupInfo{Path: "/system.slice/docker-" + idA + ".scope", ContainerID: idA, Runtime: "docker"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ParseCgroup([]byte(tt.content)); got != tt.want {
				t.Errorf("ParseCgroup(%q)\n got %+v\nwant %+v", tt.content, got, tt.want)
			}
		})
	}
}

func TestPodUIDFromComponent(t *testing.T) {
	tests := []struct {
		comp, want string
	}{
		{"pod" + uidDashed, uidDashed},
		{"kubepods-besteffort-pod" + uidUnderscore + ".slice", uidDashed},
		{"kubepods-pod" + uidUnderscore + ".slice", uidDashed},
		{"kubepods-burstable-pod" + staticPodUID + ".slice", staticPodUID},
		{"pod1b2c3d4e-5f60_4718-93a4-b5c6d7e8f901", ""}, // mixed separators
		{"pod" + uidDashed[:35], ""},
		{"podman-" + idA + ".scope", ""},
		{"kubepods-burstable.slice", ""},
	}
	for _, tt := range tests {
		got, ok := podUIDFromComponent(tt.comp)
		if got != tt.want || ok != (tt.want != "") {
			t.Errorf("podUIDFromComponent(%q) = %q, %v; want %q", tt.comp, got, ok, tt.want)
		}
	}
}

package enrich

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/connwatch/connwatch/event"
)

// The annotations containerd's CRI plugin writes into a container's OCI
// spec, and the labels the kubelet puts on CRI containers and sandboxes.
const (
	annotContainerType = "io.kubernetes.cri.container-type" // "container" or "sandbox"
	annotContainerName = "io.kubernetes.cri.container-name"
	annotImageName     = "io.kubernetes.cri.image-name"
	annotSandboxName   = "io.kubernetes.cri.sandbox-name"
	annotSandboxNS     = "io.kubernetes.cri.sandbox-namespace"
	annotSandboxUID    = "io.kubernetes.cri.sandbox-uid"

	labelPodName       = "io.kubernetes.pod.name"
	labelPodNamespace  = "io.kubernetes.pod.namespace"
	labelPodUID        = "io.kubernetes.pod.uid"
	labelContainerName = "io.kubernetes.container.name"
	labelAppName       = "app.kubernetes.io/name"
)

// containerdTaskDir is where containerd (shim v2) keeps each running
// task's OCI bundle: <state>/io.containerd.runtime.v2.task/<namespace>/<id>.
const containerdTaskDir = "io.containerd.runtime.v2.task"

// ociBundles reads the OCI spec (config.json) of containerd's running
// tasks, read-only: the CRI plugin's annotations name the pod, its
// namespace, the container and its image. Containers started without
// Kubernetes (ctr, nerdctl) have none of them there.
type ociBundles struct{ state string }

func (b ociBundles) name() string { return "OCI bundles " + filepath.Join(b.state, containerdTaskDir) }

func (b ociBundles) serves(runtime string) bool { return runtime != RuntimeDocker }

func (b ociBundles) lookup(_ context.Context, id string) (*event.ContainerMeta, error) {
	dir := filepath.Join(b.state, containerdTaskDir)
	namespaces, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, ns := range namespaces {
		f, err := os.Open(filepath.Join(dir, ns.Name(), id, "config.json"))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var spec struct{ Annotations map[string]string }
		err = json.NewDecoder(io.LimitReader(f, maxMetaFile)).Decode(&spec)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s/%.12s/config.json: not an OCI spec: %w", ns.Name(), id, err)
		}
		a := spec.Annotations
		m := &event.ContainerMeta{
			PodName:      a[annotSandboxName],
			PodNamespace: a[annotSandboxNS],
			PodUID:       a[annotSandboxUID],
			Source:       "OCI bundle",
		}
		if a[annotContainerType] != "sandbox" {
			m.K8sContainer = a[annotContainerName]
			m.Name = m.K8sContainer
			m.ImageName, m.ImageTags = splitImageRef(a[annotImageName])
		}
		return m, nil
	}
	return nil, errNotHere
}

// criAPI asks a CRI runtime (containerd, CRI-O) on its gRPC socket, with
// read-only calls: ContainerStatus (the container's name, labels and
// image), ListContainers (its pod sandbox) and PodSandboxStatus (the
// pod's name, namespace, UID and labels, app.kubernetes.io/name among
// them). Whoever can write to the socket controls every container on the
// node: prefer ociBundles.
type criAPI struct {
	socket string
	conn   *grpc.ClientConn
	rt     runtimeapi.RuntimeServiceClient
}

func newCRIAPI(socket string) (*criAPI, error) {
	// grpc.NewClient does not connect: a missing socket is an error of
	// the first lookup, not of the agent's start.
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	return &criAPI{socket: socket, conn: conn, rt: runtimeapi.NewRuntimeServiceClient(conn)}, nil
}

func (c *criAPI) name() string { return "CRI API " + c.socket }

func (c *criAPI) serves(runtime string) bool { return runtime != RuntimeDocker }

func (c *criAPI) lookup(ctx context.Context, id string) (*event.ContainerMeta, error) {
	resp, err := c.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if status.Code(err) == codes.NotFound {
		return nil, errNotHere
	}
	if err != nil {
		return nil, err
	}
	st := resp.GetStatus()
	if st == nil {
		return nil, errors.New("ContainerStatus: no status in the answer")
	}
	l := st.GetLabels()
	m := &event.ContainerMeta{
		PodName:      l[labelPodName],
		PodNamespace: l[labelPodNamespace],
		PodUID:       l[labelPodUID],
		K8sContainer: cmp.Or(l[labelContainerName], st.GetMetadata().GetName()),
		Source:       "CRI API",
	}
	m.Name = m.K8sContainer
	m.ImageName, m.ImageTags = splitImageRef(cmp.Or(st.GetImage().GetUserSpecifiedImage(), st.GetImage().GetImage()))

	// The pod: its sandbox's metadata and labels.
	list, err := c.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{Id: id}})
	if err != nil || len(list.GetContainers()) == 0 {
		return m, nil // the container's own answer stands
	}
	pod, err := c.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: list.GetContainers()[0].GetPodSandboxId()})
	if err != nil || pod.GetStatus() == nil {
		return m, nil
	}
	md := pod.GetStatus().GetMetadata()
	m.PodName = cmp.Or(m.PodName, md.GetName())
	m.PodNamespace = cmp.Or(m.PodNamespace, md.GetNamespace())
	m.PodUID = cmp.Or(m.PodUID, md.GetUid())
	m.Service = pod.GetStatus().GetLabels()[labelAppName]
	return m, nil
}

func (c *criAPI) close() error { return c.conn.Close() }

package enrich

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/connwatch/connwatch/event"
)

// maxMetaFile bounds a runtime's metadata file or API answer that is read
// (a config.v2.json is a few KiB; its environment and mounts can grow it).
const maxMetaFile = 4 << 20

// Compose's labels on the containers it creates.
const (
	labelComposeService = "com.docker.compose.service"
	labelComposeProject = "com.docker.compose.project"
)

// dockerContainer is the part of Docker's container record that is read,
// the same in <data-root>/containers/<id>/config.v2.json and in the
// Engine API's GET /containers/<id>/json.
type dockerContainer struct {
	Name   string
	Config *struct {
		Image  string
		Labels map[string]string
	}
}

// meta converts the record; source names where it came from.
func (c *dockerContainer) meta(source string) *event.ContainerMeta {
	m := &event.ContainerMeta{Name: strings.TrimPrefix(c.Name, "/"), Source: source}
	if c.Config != nil {
		m.ImageName, m.ImageTags = splitImageRef(c.Config.Image)
		m.Service = c.Config.Labels[labelComposeService]
		m.ComposeProject = c.Config.Labels[labelComposeProject]
	}
	return m
}

func decodeDocker(r io.Reader, source string) (*event.ContainerMeta, error) {
	var c dockerContainer
	if err := json.NewDecoder(io.LimitReader(r, maxMetaFile)).Decode(&c); err != nil {
		return nil, fmt.Errorf("%s: not a container record: %w", source, err)
	}
	return c.meta(source), nil
}

// dockerFiles reads Docker's on-disk container records,
// <root>/containers/<id>/config.v2.json: read-only, no API access.
type dockerFiles struct{ root string }

func (d dockerFiles) name() string { return "docker files " + filepath.Join(d.root, "containers") }

func (d dockerFiles) serves(runtime string) bool { return runtime == RuntimeDocker || runtime == "" }

func (d dockerFiles) lookup(_ context.Context, id string) (*event.ContainerMeta, error) {
	f, err := os.Open(filepath.Join(d.root, "containers", id, "config.v2.json"))
	if errors.Is(err, fs.ErrNotExist) {
		// Not Docker's, unless Docker's directory itself is missing.
		if _, derr := os.Stat(filepath.Join(d.root, "containers")); derr != nil {
			return nil, derr
		}
		return nil, errNotHere
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return decodeDocker(f, "docker config.v2.json")
}

// dockerAPI asks the Docker Engine API on its unix socket. Whoever can
// write to that socket controls every container: prefer dockerFiles.
type dockerAPI struct {
	socket string
	client *http.Client
}

func newDockerAPI(socket string) *dockerAPI {
	return &dockerAPI{socket: socket, client: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		DisableKeepAlives: true,
	}}}
}

func (d *dockerAPI) name() string { return "docker API " + d.socket }

func (d *dockerAPI) serves(runtime string) bool { return runtime == RuntimeDocker || runtime == "" }

func (d *dockerAPI) lookup(ctx context.Context, id string) (*event.ContainerMeta, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker/containers/"+id+"/json", nil)
	if err != nil {
		return nil, err
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return decodeDocker(resp.Body, "docker API")
	case http.StatusNotFound:
		return nil, errNotHere
	}
	return nil, fmt.Errorf("GET /containers/%.12s/json: %s", id, resp.Status)
}

// splitImageRef splits an image reference into its name and tags:
// "demo/busybox:1" → "demo/busybox", ["1"]; "nginx" → "nginx",
// ["latest"] (Docker's implied tag); a digest ("name@sha256:...") is left
// out of both. A registry's port ("host:5000/x") is not a tag.
func splitImageRef(ref string) (string, []string) {
	if ref == "" {
		return "", nil
	}
	name, _, digest := strings.Cut(ref, "@")
	tag := ""
	if i := strings.LastIndexByte(name, ':'); i > strings.LastIndexByte(name, '/') {
		name, tag = name[:i], name[i+1:]
	}
	switch {
	case tag != "":
		return name, []string{tag}
	case digest:
		return name, nil
	}
	return name, []string{"latest"}
}

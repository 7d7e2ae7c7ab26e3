package deploy

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestDockerfileBuildsEveryPlatform runs the Dockerfile's own go build
// command (no registry serves its base images here) for each platform it
// accepts, as the build stage would with TARGETARCH set, and checks that the
// binary is one for that machine, with the BPF object of its architecture.
func TestDockerfileBuildsEveryPlatform(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the agent twice")
	}
	df := string(readFile(t, "Dockerfile"))
	accepted := regexp.MustCompile(`(?m)^\s*([a-z0-9|]+)\) ;; \\$`).FindStringSubmatch(df)
	if accepted == nil {
		t.Fatal("the Dockerfile's TARGETARCH check (a case with `amd64|arm64) ;;`) is missing")
	}
	build := regexp.MustCompile(`(?s)CGO_ENABLED=0 GOOS=linux GOARCH=\$\{TARGETARCH:-amd64\} \\\s*\n\s*go build (.*?) -o /connwatch (\./cmd/connwatch)`).FindStringSubmatch(df)
	if build == nil {
		t.Fatal("the Dockerfile does not build ./cmd/connwatch with GOARCH=${TARGETARCH:-amd64}")
	}
	machines := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	for arch := range machines {
		if !slices.Contains(strings.Split(accepted[1], "|"), arch) {
			t.Errorf("the Dockerfile refuses TARGETARCH=%s (it accepts %s)", arch, accepted[1])
		}
	}
	for _, arch := range strings.Split(accepted[1], "|") {
		want, ok := machines[arch]
		if !ok {
			t.Errorf("the Dockerfile accepts %s, which has no committed BPF object", arch)
			continue
		}
		t.Run(arch, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "connwatch")
			// The command as the build stage's shell runs it.
			line := "go build " + build[1] + ` -o "$OUT" ` + build[2]
			cmd := exec.Command("sh", "-c", line)
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch, "VERSION=test", "OUT="+out)
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%s: %v\n%s", line, err, b)
			}
			f, err := elf.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if f.Machine != want {
				t.Errorf("GOARCH=%s built a %v binary, want %v", arch, f.Machine, want)
			}
			obj := map[string]string{"amd64": "connwatch_x86_bpfel.o", "arm64": "connwatch_arm64_bpfel.o"}[arch]
			if _, err := os.Stat(filepath.Join(root, "bpf", obj)); err != nil {
				t.Errorf("no BPF object for %s: %v", arch, err)
			}
		})
	}
}

// Package deploy holds connwatch's deployment files and the tests that
// check their wiring: docker-compose.yml at the repository root with
// deploy/compose/, the Kubernetes manifests in deploy/kubernetes/, and the
// end-to-end test backends in deploy/e2e/ (whose collector/ is a separate
// Go module). The package has no code of its own.
package deploy

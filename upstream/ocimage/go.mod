// Builds OCI image archives from binaries, for machines that reach no container registry:
// `scripts/upstream images` runs it on the binaries it built. Standard library only.
module kubeha.upstream/ocimage

go 1.24

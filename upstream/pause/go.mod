// The pod sandbox's placeholder process, built by `scripts/upstream images` into the pause
// image kubeha's clusters use. Standard library only.
module kubeha.upstream/pause

go 1.24

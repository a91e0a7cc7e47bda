"""The `caretaker` command (`cli`), composed of the base layer's commands (`restore`), the
sidecar (`sidecar`) and deploy-time tools that rewrite Kubernetes manifests (`inject`)."""

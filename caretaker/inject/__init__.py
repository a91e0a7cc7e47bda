"""`caretaker inject`: add the restore init container and the backup sidecar to existing
Deployment/StatefulSet/Pod YAML (docs/inject.md). Pure functions in `manifests`; `command` reads
and writes the text."""

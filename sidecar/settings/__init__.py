"""The sidecar's settings, all in one place: command-line options and their environment twins
(`options`), the YAML file (`yamlfile`, read through `fields`), schedules (`schedule`), and
`load`, which merges them into the typed `model.SidecarConfig`, every problem reported at once.

Only `options` is imported when the command line is parsed; the rest (APScheduler, YAML) when
the sidecar runs."""

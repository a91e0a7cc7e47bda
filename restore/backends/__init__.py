"""Backends: implementations of the engine's object store (`local`, `s3/`) and of the
`Repository` protocol over git (`git/`); `registry` maps URL schemes to them."""

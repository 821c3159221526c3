"""The platform's Helm releases: rendering (`make render`), fetching the official charts
(`make chart-deps`), deploying (`make deploy`) and building images locally (`make
images-local`). Dev tooling: never installed in an image."""

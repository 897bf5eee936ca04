#!/bin/sh
# Stand-in for debian:bookworm-slim: packages installed in an image never start their daemons.
exit 101

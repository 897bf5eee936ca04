#!/bin/sh
# Entry point of the redis:7.2 stand-in. The official image's redis-server is built with protected
# mode off; Debian's is not, so it is turned off here, before the command's own options (which
# can turn it on again). A first argument that is an option or a .conf file runs redis-server.
set -e
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
  set -- redis-server "$@"
fi
if [ "$1" = redis-server ]; then
  shift
  if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
    conf=$1; shift   # a configuration file comes first
    set -- redis-server "$conf" --protected-mode no "$@"
  else
    set -- redis-server --protected-mode no "$@"
  fi
fi
umask 0077
exec "$@"

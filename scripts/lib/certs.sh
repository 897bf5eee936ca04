# shellcheck shell=bash
# Throw-away certificates for the TLS listeners of local test runs (never for production):
#
#   source scripts/lib/certs.sh
#   certs_make DIR
#
# writes into DIR (created):
#   ca.pem, ca.key            a private certificate authority (one day)
#   server.pem, server.key    signed by it, for IP 127.0.0.1 and DNS localhost
#   client.pem, client.key    signed by it, CN huleedu-client (mutual TLS)
#   server.p12                server key and chain (PKCS#12, password in store.password)
#   truststore.p12            the CA alone (PKCS#12, same password), for Java servers
#   other-ca.pem              a second, unrelated CA (for "untrusted CA" tests)
# Private keys are PKCS#8 without a passphrase. Needs openssl (and keytool for the trust store,
# which comes with the JDK).

certs_make() {
  local dir=$1
  mkdir -p "$dir"
  (
    set -euo pipefail
    cd "$dir"
    local days=2 pw
    pw=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
    printf '%s' "$pw" >store.password
    openssl req -x509 -newkey rsa:2048 -nodes -days "$days" -subj "/CN=huleedu-test-ca" \
      -keyout ca.key -out ca.pem -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    openssl req -x509 -newkey rsa:2048 -nodes -days "$days" -subj "/CN=huleedu-other-ca" \
      -keyout other-ca.key -out other-ca.pem -addext "basicConstraints=critical,CA:TRUE" 2>/dev/null
    local name cn ext
    for name in server client; do
      if [ "$name" = server ]; then
        cn=127.0.0.1
        ext="subjectAltName=IP:127.0.0.1,DNS:localhost
extendedKeyUsage=serverAuth,clientAuth"
      else
        cn=huleedu-client
        ext="extendedKeyUsage=clientAuth"
      fi
      openssl req -newkey rsa:2048 -nodes -subj "/CN=$cn" -keyout "$name.key" -out "$name.csr" 2>/dev/null
      printf '%s\n' "$ext" >"$name.ext"
      openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days "$days" \
        -extfile "$name.ext" -out "$name.pem" 2>/dev/null
      rm -f "$name.csr" "$name.ext"
    done
    openssl pkcs12 -export -in server.pem -inkey server.key -certfile ca.pem -name server \
      -passout "pass:$pw" -out server.p12
    rm -f truststore.p12
    keytool -importcert -noprompt -alias huleedu-test-ca -file ca.pem -keystore truststore.p12 \
      -storetype PKCS12 -storepass "$pw" >/dev/null 2>&1
    chmod 600 ./*.key store.password
  )
}

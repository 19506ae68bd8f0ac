#!/usr/bin/env bash
# Regenerates the test PKI used by examples, doc tests and the test suite.
#
# Every certificate is valid from 2000-01-01 to 9999-12-31, so nothing here
# expires during the project's life and no test depends on today's date.
#
#   ca.pem / ca-key.pem             the test CA (what clients trust)
#   test_cert.pem / test_key.pem    node certificate: localhost, 127.0.0.1, ::1,
#                                   serverAuth + clientAuth (used for mTLS too)
#   server.pem / server-key.pem     same key pair under the names the guide uses
#   client.pem / client-key.pem     a client identity for mutual TLS
#   (generate-member.sh then reissues test_cert.pem / server.pem as cluster
#   member certificates and writes other-member*.pem)
#   other-ca.pem                    an unrelated CA ...
#   other_cert.pem / other_key.pem  ... and a localhost certificate it signed
#
# Requires only the openssl command line. Run from anywhere: ./certs/generate.sh
set -euo pipefail
cd "$(dirname "$0")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cat > "$work/ca.cnf" <<CNF
[ ca ]
default_ca = test_ca
[ test_ca ]
dir = $work
database = $work/index.txt
new_certs_dir = $work
serial = $work/serial
default_md = sha256
policy = any
copy_extensions = copy
unique_subject = no
[ any ]
commonName = supplied
[ v3_ca ]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[ v3_node ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = DNS:localhost,IP:127.0.0.1,IP:::1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ v3_client ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectAltName = DNS:rpcnet-test-client
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
CNF

make_ca() { # name cn
  : > "$work/index.txt"; echo 01 > "$work/serial"
  openssl ecparam -name prime256v1 -genkey -noout -out "$work/$1.key"
  openssl req -new -key "$work/$1.key" -subj "/CN=$2" -out "$work/$1.csr"
  openssl ca -batch -config "$work/ca.cnf" -selfsign -keyfile "$work/$1.key" \
    -in "$work/$1.csr" -out "$work/$1.crt" -extensions v3_ca -notext \
    -startdate 20000101000000Z -enddate 99991231235959Z 2>/dev/null
}
sign() { # ca leafname cn extensions
  openssl ecparam -name prime256v1 -genkey -noout -out "$work/$2.key"
  openssl req -new -key "$work/$2.key" -subj "/CN=$3" -out "$work/$2.csr"
  openssl ca -batch -config "$work/ca.cnf" -cert "$work/$1.crt" -keyfile "$work/$1.key" \
    -in "$work/$2.csr" -out "$work/$2.crt" -extensions "$4" -notext \
    -startdate 20000101000000Z -enddate 99991231235959Z 2>/dev/null
}
pkcs8() { openssl pkcs8 -topk8 -nocrypt -in "$1" -out "$2"; }

make_ca ca "rpcnet test CA"
sign ca node localhost v3_node
sign ca client rpcnet-test-client v3_client
cp "$work/ca.crt" ca.pem; pkcs8 "$work/ca.key" ca-key.pem
cp "$work/node.crt" test_cert.pem; pkcs8 "$work/node.key" test_key.pem
cp test_cert.pem server.pem; cp test_key.pem server-key.pem
cp "$work/client.crt" client.pem; pkcs8 "$work/client.key" client-key.pem

make_ca other "unrelated CA"
sign other othernode localhost v3_node
cp "$work/other.crt" other-ca.pem
cp "$work/othernode.crt" other_cert.pem; pkcs8 "$work/othernode.key" other_key.pem
./generate-member.sh
echo "certificates written to $(pwd)"

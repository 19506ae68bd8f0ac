#!/usr/bin/env bash
# Reissues the node certificate test_cert.pem (and its copy server.pem)
# from the test CA in this folder (ca.pem / ca-key.pem), same key
# (test_key.pem), as a cluster *member certificate*.
#
# A member certificate is what a node needs to take part in membership
# (gossip): besides localhost, 127.0.0.1 and ::1 it carries the URI names
# rpcnet-member://127.0.0.1 and rpcnet-member://[::1], meaning "a member
# that may speak for any port on these hosts". Application clients need no
# certificate; client.pem is a CA-signed certificate *without* the member
# role. Also other-member.pem / other-member-key.pem: a member certificate
# from an unrelated CA (other-member-ca.pem), for tests of outsiders.
# Valid 2000-01-01 to 9999-12-31. generate.sh runs this last;
# `cargo run -p rpcnet-certs -- --member ...` issues the same kind.
set -euo pipefail
cd "$(dirname "$0")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
: > "$work/index.txt"; echo 4d454d42 > "$work/serial"
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
copy_extensions = none
unique_subject = no
[ any ]
commonName = supplied
[ v3_member ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = DNS:localhost,IP:127.0.0.1,IP:::1,URI:rpcnet-member://127.0.0.1,URI:rpcnet-member://[::1]
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
CNF
openssl req -new -key test_key.pem -subj "/CN=localhost" -out "$work/member.csr"
openssl ca -batch -config "$work/ca.cnf" -cert ca.pem -keyfile ca-key.pem \
  -in "$work/member.csr" -out "$work/member.crt" -extensions v3_member -notext \
  -startdate 20000101000000Z -enddate 99991231235959Z 2>/dev/null
cp "$work/member.crt" test_cert.pem
cp test_cert.pem server.pem

cat >> "$work/ca.cnf" <<CNF
[ v3_ca ]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
CNF
openssl ecparam -name prime256v1 -genkey -noout -out "$work/oca.key"
openssl req -new -key "$work/oca.key" -subj "/CN=unrelated member CA" -out "$work/oca.csr"
openssl ca -batch -config "$work/ca.cnf" -selfsign -keyfile "$work/oca.key" \
  -in "$work/oca.csr" -out "$work/oca.crt" -extensions v3_ca -notext \
  -startdate 20000101000000Z -enddate 99991231235959Z 2>/dev/null
openssl ecparam -name prime256v1 -genkey -noout -out "$work/om.key"
openssl req -new -key "$work/om.key" -subj "/CN=localhost" -out "$work/om.csr"
openssl ca -batch -config "$work/ca.cnf" -cert "$work/oca.crt" -keyfile "$work/oca.key" \
  -in "$work/om.csr" -out "$work/om.crt" -extensions v3_member -notext \
  -startdate 20000101000000Z -enddate 99991231235959Z 2>/dev/null
cp "$work/oca.crt" other-member-ca.pem
cp "$work/om.crt" other-member.pem
openssl pkcs8 -topk8 -nocrypt -in "$work/om.key" -out other-member-key.pem
echo "member certificates written to $(pwd)"

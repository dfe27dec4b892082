#!/usr/bin/env python3
"""Drive the simulated Proxmox VE with proxmoxer (PyPI), a client nobody here wrote.

Flow: create a VM, configure it, start it, stop it, destroy it, each task awaited
through /nodes/{node}/tasks/{upid}/status as proxmoxer users do.

Environment (set by homelab-sim's integration test `proxmoxer::drives_the_simulator`):
  PVE_URL           https://127.0.0.1:<port>
  PVE_TOKEN_ID      user@realm!tokenname
  PVE_TOKEN_SECRET  the token's secret
  PVE_CA_FILE       the lab's self-signed certificate (PEM), the only trust anchor
  PVE_FINGERPRINT   its SHA-256 fingerprint (AA:BB:...), checked before anything is sent

TLS is verified: requests (under proxmoxer) gets the certificate file as its CA bundle
(verify_ssl=<path>), and the peer certificate's fingerprint is compared to the pin first.
Exits non-zero with a message on the first difference.
"""

import hashlib
import os
import socket
import ssl
import sys
import time
from urllib.parse import urlparse

from proxmoxer import ProxmoxAPI
from proxmoxer.core import ResourceException


def fail(msg):
    print(f"proxmoxer flow FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


url = urlparse(os.environ["PVE_URL"])
ca_file = os.environ["PVE_CA_FILE"]
pin = os.environ["PVE_FINGERPRINT"].upper()
user, token_name = os.environ["PVE_TOKEN_ID"].split("!", 1)
secret = os.environ["PVE_TOKEN_SECRET"]

# The pin: the certificate the server presents is the one we were told about.
ctx = ssl.create_default_context(cafile=ca_file)
with socket.create_connection((url.hostname, url.port), timeout=10) as raw:
    with ctx.wrap_socket(raw, server_hostname=url.hostname) as tls:
        der = tls.getpeercert(binary_form=True)
seen = ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())
if seen != pin:
    fail(f"server certificate {seen} does not match the pin {pin}")

pve = ProxmoxAPI(
    url.hostname,
    port=url.port,
    user=user,
    token_name=token_name,
    token_value=secret,
    verify_ssl=ca_file,
    timeout=30,
)


def wait(upid):
    node = upid.split(":")[1]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        st = pve.nodes(node).tasks(upid).status.get()
        if st["status"] == "stopped":
            if st.get("exitstatus") != "OK":
                fail(f"task {upid} ended {st.get('exitstatus')!r}")
            return st
        time.sleep(0.05)
    fail(f"task {upid} did not finish")


version = pve.version.get()
if not str(version.get("version", "")).startswith("9."):
    fail(f"unexpected version {version}")
node = pve.nodes.get()[0]["node"]
vmid = int(pve.cluster.nextid.get())

# create
wait(
    pve.nodes(node).qemu.post(
        vmid=vmid,
        name="proxmoxer-vm",
        memory=512,
        cores=1,
        ostype="l26",
        net0="virtio,bridge=vmbr0",
        scsi0="local-lvm:1",
    )
)
print(f"created VM {vmid} on {node}")

# configure (synchronous PUT) and read back
pve.nodes(node).qemu(vmid).config.put(
    memory=1024, description="configured by proxmoxer", tags="proxmoxer"
)
cfg = pve.nodes(node).qemu(vmid).config.get()
if int(cfg["memory"]) != 1024 or cfg.get("tags") != "proxmoxer":
    fail(f"config not applied: {cfg}")
if not cfg.get("scsi0", "").startswith(f"local-lvm:vm-{vmid}-disk-0"):
    fail(f"unexpected disk: {cfg.get('scsi0')}")
print("configured")

# a bad value is refused with PVE's parameter error
try:
    pve.nodes(node).qemu(vmid).config.put(memory="lots")
    fail("memory=lots was accepted")
except ResourceException as e:
    if e.status_code != 400 or "memory" not in (e.errors or {}):
        fail(f"unexpected error for memory=lots: {e.status_code} {e.errors}")

# start
wait(pve.nodes(node).qemu(vmid).status.start.post())
st = pve.nodes(node).qemu(vmid).status.current.get()
if st["status"] != "running":
    fail(f"not running after start: {st['status']}")
print("started")

# stop
wait(pve.nodes(node).qemu(vmid).status.stop.post())
st = pve.nodes(node).qemu(vmid).status.current.get()
if st["status"] != "stopped":
    fail(f"not stopped after stop: {st['status']}")
print("stopped")

# destroy
wait(pve.nodes(node).qemu(vmid).delete())
try:
    pve.nodes(node).qemu(vmid).config.get()
    fail("config still readable after destroy")
except ResourceException as e:
    if e.status_code != 500 or "does not exist" not in e.status_message + str(e):
        fail(f"unexpected error after destroy: {e.status_code} {e}")
if any(g["vmid"] == vmid for g in pve.nodes(node).qemu.get()):
    fail("VM still listed after destroy")
print("destroyed")
print("proxmoxer flow ok")

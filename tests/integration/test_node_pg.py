"""node-postgres (pg@8) through pgtide: runs `node --test tests/node/` with PGTIDE_URL set. The
pgtide offers TLS (client_tls_sslmode = prefer): the plain tests stay plain (pg's default),
tls.test.js connects with `ssl` (PGTIDE_TLS_CA names the CA that signed pgtide's certificate)."""

import os
import re
import subprocess

import pytest

import pgtide_harness as h

NODE_DIR = os.path.join(h.REPO_ROOT, "tests", "node")


@pytest.mark.deadline(120)
def test_node_pg(pgtide, node_bin, tls_files):
    if not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "pg")):
        pytest.skip("tests/node/node_modules is missing: run `npm ci` in tests/node")
    p = pgtide.start({"default_pool_size": 10, "client_tls_sslmode": "prefer",
                      "client_tls_key_file": tls_files.server_key,
                      "client_tls_cert_file": tls_files.server_crt})
    env = dict(os.environ, PGTIDE_URL=p.url(), PGTIDE_TLS_CA=tls_files.ca_crt)
    try:
        r = subprocess.run([node_bin, "--test", "--test-reporter=tap", NODE_DIR + "/"],
                           cwd=h.REPO_ROOT, env=env, capture_output=True, text=True,
                           timeout=100)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"node --test did not finish: {e.stdout}\n{e.stderr}\n{p.diagnostics()}")
    out = r.stdout + r.stderr
    assert r.returncode == 0, f"node tests failed:\n{out}\n{p.diagnostics()}"
    passed = re.search(r"^# pass (\d+)", out, re.M)
    skipped = re.search(r"^# skipped (\d+)", out, re.M)
    assert passed and int(passed[1]) >= 12, out
    assert re.search(r"^ok \d+ - a CA that did not sign the certificate is refused", out, re.M) \
        or re.search(r"ok \d+ - a CA that did not sign", out), out
    assert not skipped or int(skipped[1]) == 0, out

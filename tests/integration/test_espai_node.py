"""The seed's own Node.js examples (axios) against devicecloud, changing only base URL and keys.

The examples name fixed ids and a fixed MAC, so the test arranges devices that carry them (on a
server of its own) and checks what each example prints.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.espai import Firmware, Tenant, add_device, listed, new_tenant, set_public_id
from support.server import Server

EXAMPLES = Path(__file__).parents[1] / "espai_node"
SEED_URL = "https://api.espai.fun"
OPEN_KEY = "esp_ai平台的32位open_api_key"
UPDATE_ID = "2cf661bb42b642018ee13af7150b8310"
DELETE_ID = "b93ec353967441ada8d31b4910a3032d"
SEED_MAC = "FC012CDB1430"


@pytest.fixture(scope="module")
def node_modules() -> Path:
    """axios, installed from the committed lock file if it is not there yet."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed to run the seed's Node.js examples "
                    "(scripts/test.sh installs them)")
    modules = EXAMPLES / "node_modules"
    if not (modules / "axios" / "package.json").is_file():
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=EXAMPLES,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
    return modules


@pytest.fixture
def served(own_server: Server) -> Iterator[Server]:
    yield own_server.start()


def run_example(modules: Path, tmp_path: Path, name: str, server: Server, open_key: str,
                **placeholders: str) -> str:
    """Run the example with the base URL, the key and `placeholders` replaced; what it prints."""
    source = (EXAMPLES / name).read_text(encoding="utf-8")
    assert SEED_URL in source and OPEN_KEY in source
    script = source.replace(SEED_URL, server.url).replace(OPEN_KEY, open_key)
    for placeholder, value in placeholders.items():
        assert placeholder in script
        script = script.replace(placeholder, value)
    path = tmp_path / name
    path.write_text(script, encoding="utf-8")
    done = subprocess.run(["node", str(path)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "NODE_PATH": str(modules)})
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return done.stdout


async def test_the_seed_examples_run_unchanged(node_modules: Path, served: Server,
                                               tmp_path: Path) -> None:
    server = served
    tenant: Tenant = new_tenant(server)
    key = tenant.open_api_key
    assert add_device(server, tenant, SEED_MAC)["success"] is True
    set_public_id(server, SEED_MAC, UPDATE_ID)
    firmware = await Firmware.connect(server, SEED_MAC, tenant.api_key)

    # update: the fields that changed, the new update time; the device gets localData.
    printed = run_example(node_modules, tmp_path, "update.js", server, key)
    assert "success: true" in printed and "message: '修改成功'" in printed
    for field in ("name: '小琅'", "enable: '1'", "net_ip: '192.168.3.71'", "nation: 'China'",
                  "province: 'Guangdong'", "city: 'Guangzhou'", "longitude: '113.2539'",
                  "latitude: '23.1181'", "update_time: "):
        assert field in printed
    assert "wifi_ssid" not in printed  # the device reported these already: unchanged
    assert await firmware.recv() == {"type": "set_local_data", "data": {
        "wifi_ssid": "联域科技", "wifi_pwd": "lykj987654321"}}

    # list: every filter of the seed's example matches the device just updated (online too).
    printed = run_example(node_modules, tmp_path, "list.js", server, key,
                          **{"你自己设备对应的api_key": tenant.api_key})
    assert "success: true" in printed and "message: '请求成功'" in printed
    for field in ("totalNumber: 1", f"id: '{UPDATE_ID}'", "device_id: 'FC:01:2C:DB:14:30'",
                  "name: '小琅'", "is_online: '1'", "enable: '1'", "version: '1.22.34'",
                  "bin_id: '0'", "type: '0'", "wifi_pwd: 'lykj987654321'",
                  "user_name: '琳琅'", "user_phone: 15916888888"):
        assert field in printed
    wrong = run_example(node_modules, tmp_path, "list.js", server, "0" * 32,
                        **{"你自己设备对应的api_key": tenant.api_key})
    assert "success: false" in wrong and "code: 401" in wrong

    # del: the seed's id is a device of this account.
    other_mac = "A1B2C3D4E5F6"
    add_device(server, tenant, other_mac)
    set_public_id(server, other_mac, DELETE_ID)
    printed = run_example(node_modules, tmp_path, "del.js", server, key)
    assert printed.strip() == "{ success: true, message: '解绑成功' }"
    assert listed(server, tenant, device_id=other_mac)["totalNumber"] == 0
    printed = run_example(node_modules, tmp_path, "del.js", server, key)
    assert "success: false" in printed and "message: '设备未找到,请检查!'" in printed

    # unbind: by agent key and MAC; the connected device is told.
    printed = run_example(node_modules, tmp_path, "unbind.js", server, key,
                          **{'"xxx"': f'"{tenant.api_key}"',
                             "XX:XX:XX:XX:XX:XX": "FC:01:2C:DB:14:30"})
    assert printed.strip() == "{ success: true, message: '解绑成功' }"
    notice = await firmware.recv()
    assert notice["type"] == "error" and "设备已解绑" in notice["message"]
    assert await firmware.closed()
    assert listed(server, tenant)["totalNumber"] == 0

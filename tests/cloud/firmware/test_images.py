"""Images: an upload is stored by its digest, its manifest verifies with the firmware
public key (as a device checks it), the download resumes with ranges and refuses a range
in the error envelope; an image a campaign uses stays; images are the installation's (only
a global operator uploads or deletes one); another network's operator reaches no campaign
of this one."""

from __future__ import annotations

import hashlib
import os

from kickstand.protocol.errors import ManifestError
from kickstand.protocol.firmware import verify_manifest
from kickstand.protocol.signing import generate_private_key, public_key_bytes
from tests.cloud.firmware.conftest import Fw

IMAGE = os.urandom(300_000)
DIGEST = hashlib.sha256(IMAGE).hexdigest()


async def test_upload_signs_a_manifest_the_device_verifies(fw: Fw) -> None:
    r = await fw.upload(IMAGE)
    assert r.status_code == 200, r.text
    image = r.json()["data"]
    assert image["sha256"] == DIGEST and image["size"] == len(IMAGE)
    assert image["url"] == f"http://kickstand.test/v1/firmware/images/{DIGEST}"
    manifest = verify_manifest(bytes.fromhex(image["manifest"]), [fw.public_key])
    assert (manifest.target, manifest.version) == ("vehicle-controller:vc1", "2.0.0")
    assert (manifest.size, manifest.sha256.hex(), manifest.url) == (
        len(IMAGE),
        DIGEST,
        image["url"],
    )
    # Another key (the command key, an attacker's) is not trusted.
    try:
        verify_manifest(
            bytes.fromhex(image["manifest"]), [public_key_bytes(generate_private_key())]
        )
    except ManifestError as exc:
        assert exc.problem == "unknown-key"
    else:
        raise AssertionError("a manifest verified with a key that did not sign it")
    # Stored once, by its digest; the same version again is refused.
    assert (fw.settings.FIRMWARE_STORE_DIR / DIGEST[:2] / DIGEST).read_bytes() == IMAGE  # type: ignore[operator]
    again = await fw.upload(IMAGE)
    assert again.status_code == 409 and again.json()["reason"] == "image-exists"
    listed = await fw.client.get("/v1/dashboard/firmware/images", headers=fw.operator)
    assert [i["sha256"] for i in listed.json()["data"]] == [DIGEST]


async def test_bad_uploads_are_refused(fw: Fw) -> None:
    assert (await fw.upload(b"")).status_code == 422
    bad = await fw.upload(IMAGE, target="toaster")
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "target"
    fw.settings.FIRMWARE_MAX_IMAGE_BYTES = 1000
    big = await fw.upload(IMAGE, version="2.0.1")
    assert big.status_code == 422 and big.json()["errors"][0]["field"] == "body"
    # Nothing left behind in the store.
    assert [p for p in fw.settings.FIRMWARE_STORE_DIR.rglob("*") if p.is_file()] == []  # type: ignore[union-attr]


async def test_download_resumes_with_a_range(fw: Fw) -> None:
    assert (await fw.upload(IMAGE)).status_code == 200
    url = f"/v1/firmware/images/{DIGEST}"
    whole = await fw.client.get(url)  # no credentials: devices download anonymously
    assert whole.status_code == 200 and whole.content == IMAGE
    assert whole.headers["etag"] == f'"{DIGEST}"'
    assert whole.headers["accept-ranges"] == "bytes"
    # A link cut after 100 000 bytes: the device asks for the rest only.
    rest = await fw.client.get(url, headers={"Range": "bytes=100000-"})
    assert rest.status_code == 206
    assert rest.headers["content-range"] == f"bytes 100000-{len(IMAGE) - 1}/{len(IMAGE)}"
    assert IMAGE[:100_000] + rest.content == IMAGE
    past = await fw.client.get(url, headers={"Range": f"bytes={len(IMAGE)}-"})
    assert past.status_code == 416
    assert past.headers["content-range"] == f"bytes */{len(IMAGE)}"
    # Our envelope (CONTRIBUTING "API errors: one way out"), not Starlette's plain text.
    assert past.headers["content-type"] == "application/json"
    assert past.json()["code"] == 24 and past.json()["reason"] == "range-not-satisfiable"
    malformed = await fw.client.get(url, headers={"Range": "lines=1-2"})
    assert malformed.status_code == 400 and malformed.json()["code"] == 2
    assert malformed.json()["errors"][0]["field"] == "Range"
    # A range within the image is still Starlette's 206.
    last = await fw.client.get(url, headers={"Range": f"bytes={len(IMAGE) - 1}-"})
    assert last.status_code == 206 and last.content == IMAGE[-1:]
    missing = await fw.client.get(f"/v1/firmware/images/{'0' * 64}")
    assert missing.status_code == 404


async def test_an_image_in_a_campaign_stays_and_other_networks_are_refused(fw: Fw) -> None:
    image = (await fw.upload(IMAGE)).json()["data"]
    body = {
        "name": "vc1 2.0.0",
        "network_id": fw.demo.network_id,
        "image_id": image["id"],
        "selection": {"device_ids": ["vh-LY0001", "vh-LY0002", "vh-LY0003"]},
    }
    refused = await fw.client.post("/v1/dashboard/firmware/campaigns", json=body, headers=fw.other)
    assert refused.status_code == 403 and refused.json()["reason"] == "network-not-allowed"
    r = await fw.client.post("/v1/dashboard/firmware/campaigns", json=body, headers=fw.operator)
    assert r.status_code == 200, r.text
    campaign = r.json()["data"]
    assert campaign["state"] == "ready" and campaign["devices"] == 3
    assert campaign["wave_sizes"] == [1, 2]  # the canary, then twice as many
    path = f"/v1/dashboard/firmware/campaigns/{campaign['id']}"
    assert (await fw.client.get(path, headers=fw.other)).status_code == 403
    assert (await fw.client.post(f"{path}/cancel", headers=fw.other)).status_code == 403
    mine = await fw.client.get("/v1/dashboard/firmware/campaigns", headers=fw.other)
    assert mine.status_code == 200 and mine.json()["data"] == []
    listed = await fw.client.get("/v1/dashboard/firmware/campaigns", headers=fw.operator)
    assert listed.json()["data"] == [campaign]  # a page reads images and counts at once
    devices = await fw.client.get(f"{path}/devices", headers=fw.operator)
    assert sorted(d["device_id"] for d in devices.json()["data"]) == [
        "vh-LY0001",
        "vh-LY0002",
        "vh-LY0003",
    ]
    gone = await fw.client.delete(f"/v1/dashboard/firmware/images/{image['id']}", headers=fw.admin)
    assert gone.status_code == 409 and gone.json()["reason"] == "image-in-use"
    assert (await fw.client.get(f"/v1/firmware/images/{DIGEST}")).status_code == 200


async def test_images_are_managed_by_global_operators_only(fw: Fw) -> None:
    """An image's signed manifest is valid on every network's devices: an operator of one
    network (this one's or another's) neither uploads nor deletes one; every operator with
    ``firmware`` reads them to pick one for a campaign."""
    image = (await fw.upload(IMAGE)).json()["data"]
    path = f"/v1/dashboard/firmware/images/{image['id']}"
    for operator in (fw.other, fw.operator):
        refused = await fw.upload(IMAGE, version="2.0.1", as_=operator)
        assert refused.status_code == 403, refused.text
        assert refused.json()["reason"] == "global-grant-required"
        kept = await fw.client.delete(path, headers=operator)
        assert kept.status_code == 403 and kept.json()["reason"] == "global-grant-required"
        read = await fw.client.get(path, headers=operator)
        assert read.status_code == 200 and read.json()["data"]["sha256"] == DIGEST
    assert [p.name for p in fw.settings.FIRMWARE_STORE_DIR.rglob("*") if p.is_file()] == [DIGEST]  # type: ignore[union-attr]
    # A malformed target is the request's 422 whoever asks (not a scope question).
    bad = await fw.upload(IMAGE, target="toaster", as_=fw.other)
    assert bad.status_code == 422
    gone = await fw.client.delete(path, headers=fw.admin)
    assert gone.status_code == 200, gone.text
    assert (await fw.client.get(f"/v1/firmware/images/{DIGEST}")).status_code == 404

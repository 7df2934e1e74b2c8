"""Dataset scanning, captions, repeat folders, image reading and buckets."""

from __future__ import annotations

import pytest
from PIL import Image

from loratui.engine.data.buckets import make_buckets, nearest_bucket
from loratui.engine.data.dataset import scan
from loratui.engine.errors import DatasetError
from loratui.engine.data.images import fit_to_bucket, image_size, open_rgb


def _img(path, size=(64, 48), mode="RGB", color=(200, 10, 10)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color if mode == "RGB" else None).save(path)
    return path


def test_sidecar_wins_over_metadata_csv_and_user_is_told(tmp_path):
    _img(tmp_path / "a.png")
    _img(tmp_path / "b.jpg")
    _img(tmp_path / "c.webp")
    (tmp_path / "a.txt").write_text("from sidecar\n", encoding="utf-8")
    (tmp_path / "metadata.csv").write_text(
        '\ufefffilename,prompt\na.png,from csv\nb.jpg,"a dog, ""quoted"", sitting"\n', encoding="utf-8"
    )
    ds = scan(tmp_path)
    caps = {r.rel: (r.caption, r.caption_source) for r in ds.images}
    assert caps == {
        "a.png": ("from sidecar", "sidecar"),
        "b.jpg": ('a dog, "quoted", sitting', "metadata"),
        "c.webp": (None, "none"),
    }
    assert any("the .txt wins" in n for n in ds.notes)


def test_kohya_repeat_folders(tmp_path):
    _img(tmp_path / "10_mycat" / "x.png")
    _img(tmp_path / "3_other" / "y.png")
    _img(tmp_path / "plain" / "z.png")
    reps = {r.rel: r.repeats for r in scan(tmp_path).images}
    assert reps == {"10_mycat/x.png": 10, "3_other/y.png": 3, "plain/z.png": 1}


def test_symlink_out_of_the_folder_is_not_followed(tmp_path):
    outside = _img(tmp_path / "outside" / "secret.png")
    data = tmp_path / "data"
    _img(data / "ok.png")
    (data / "link.png").symlink_to(outside)
    assert [r.rel for r in scan(data).images] == ["ok.png"]


def test_missing_folder_and_file_are_clear_errors(tmp_path):
    with pytest.raises(DatasetError, match="no such folder"):
        scan(tmp_path / "nope")
    f = _img(tmp_path / "a.png")
    with pytest.raises(DatasetError, match="not a folder"):
        scan(f)


def test_exif_orientation_is_applied(tmp_path):
    path = tmp_path / "rot.jpg"
    im = Image.new("RGB", (80, 40), (0, 0, 255))
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90° on display
    im.save(path, exif=exif)
    assert image_size(path) == (40, 80)
    assert open_rgb(path).size == (40, 80)


@pytest.mark.parametrize("orientation", [1, 6, 8])
@pytest.mark.parametrize("mode", ["RGB", "L", "CMYK"])
def test_a_large_jpeg_is_decoded_small_and_fits_the_same(tmp_path, orientation, mode):
    import numpy as np

    # a photo-like picture: smooth light, edges, a little sensor noise; upright it is portrait
    rng = np.random.default_rng(orientation)
    y, x = np.mgrid[0:1200, 0:1600]
    base = 120 + 60 * np.sin(x / 90.0) * np.cos(y / 70.0) + 40 * ((x // 200 + y // 150) % 2)
    rgb = np.stack([base, base * 0.8 + 30, 255 - base], -1) + rng.normal(0, 4, (1200, 1600, 3))
    stored = Image.fromarray(np.clip(rgb, 0, 255).astype("uint8")).convert(mode)
    exif = stored.getexif()
    exif[0x0112] = orientation
    path = tmp_path / "photo.jpg"
    stored.save(path, quality=92, exif=exif)
    bucket = (96, 128) if orientation != 1 else (128, 96)

    small = open_rgb(path, cover=bucket)
    full = open_rgb(path)
    assert small.mode == "RGB" and full.size == ((1200, 1600) if orientation != 1 else (1600, 1200))
    # decoded at 1/4 scale (300x400 keeps >= 2x the 96x128 the fit keeps), and upright
    assert small.size == (full.width // 4, full.height // 4)
    a = np.asarray(fit_to_bucket(small, bucket), dtype=np.float64)
    b = np.asarray(fit_to_bucket(full, bucket), dtype=np.float64)
    psnr = 10 * np.log10(255**2 / np.mean((a - b) ** 2))
    assert psnr > 40, f"the fitted image differs: PSNR {psnr:.1f} dB"


def test_a_small_jpeg_is_decoded_whole(tmp_path):
    path = tmp_path / "small.jpg"
    Image.new("RGB", (200, 150), (10, 200, 30)).save(path)
    assert open_rgb(path, cover=(128, 96)).size == (200, 150)


@pytest.mark.parametrize("mode", ["RGBA", "L", "P", "CMYK", "I;16", "LA"])
def test_any_mode_becomes_rgb(tmp_path, mode):
    path = tmp_path / ("x.tif" if mode == "CMYK" else "x.png")
    Image.new(mode, (16, 16)).save(path)
    assert open_rgb(path).mode == "RGB"


def test_transparent_pixels_become_white(tmp_path):
    path = tmp_path / "t.png"
    Image.new("RGBA", (8, 8), (0, 0, 0, 0)).save(path)
    assert open_rgb(path).getpixel((0, 0)) == (255, 255, 255)


def test_corrupt_image_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.png"
    path.write_bytes(b"not an image at all")
    with pytest.raises(DatasetError, match="bad.png"):
        open_rgb(path)


def test_buckets_keep_area_and_pick_nearest_aspect():
    buckets = make_buckets(512)
    assert (512, 512) in buckets
    assert all(w % 64 == 0 and h % 64 == 0 and w * h <= 512 * 512 for w, h in buckets)
    assert nearest_bucket(1920, 1080, buckets)[0] > nearest_bucket(1920, 1080, buckets)[1]
    assert nearest_bucket(1000, 1000, buckets) == (512, 512)
    assert make_buckets(512, enabled=False) == [(512, 512)]


def test_fit_to_bucket_covers_then_centre_crops():
    im = Image.new("RGB", (300, 100))
    out = fit_to_bucket(im, (64, 64))
    assert out.size == (64, 64)

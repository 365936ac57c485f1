"""Image folders as data sets (owndata.load_own): layouts, colour, sizes, bad pictures, links, the cache."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnscope.base.errors import DataError
from cnnscope.data import folder as owndata
from cnnscope.data import pictures as picturefiles

RED, GREEN = (220, 20, 20), (20, 200, 20)


@pytest.fixture(autouse=True)
def _cache_home(tmp_path, monkeypatch):
    """Every test gets its own empty cnnscope cache directory."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def save(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, np.uint8), mode).save(path)
    return path


def square(colour, size: int = 8, at: int = 2) -> np.ndarray:
    """A coloured square on black, (size, size, 3)."""
    x = np.zeros((size, size, 3), np.uint8)
    x[at:at + 4, at:at + 4] = colour
    return x


def grey(value: int, size=(8, 8)) -> np.ndarray:
    return np.full(size, value, np.uint8)


def flat_folder(root: Path, counts=(10, 10, 10)) -> Path:
    """PATH/<class>/*.png, class k's pictures all of brightness 40 * (k + 1) + i."""
    for k, n in enumerate(counts):
        for i in range(n):
            save(root / f"class{k}" / f"{i:02d}.png", grey(40 * (k + 1) + i))
    return root


def split_folder(root: Path) -> Path:
    """PATH/train/{a,b}/ (3 each) and PATH/test/{a,b}/ (1 each), grey 8×8."""
    for split, n in (("train", 3), ("test", 1)):
        for k, name in enumerate("ab"):
            for i in range(n):
                save(root / split / name / f"{i}.png", grey(100 * k + 10 * i + (5 if split == "test" else 0)))
    return root


def error_of(*args, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        owndata.load_own(*args, **kwargs)
    return str(info.value)


# --- layouts -----------------------------------------------------------------------------------
def test_train_and_test_folders_keep_their_split_and_sorted_class_names(tmp_path):
    raw = owndata.load_own(str(split_folder(tmp_path / "pics")), progress=False)
    assert raw.class_names == ("a", "b")
    assert raw.train_raw.shape == (6, 8, 8) and raw.train_raw.dtype == np.uint8
    assert raw.test_raw.shape == (2, 8, 8)
    assert raw.train_y.dtype == np.int64 and raw.train_y.tolist() == [0, 0, 0, 1, 1, 1]
    assert raw.test_y.tolist() == [0, 1]
    assert raw.train_raw[:, 0, 0].tolist() == [0, 10, 20, 100, 110, 120]
    assert raw.test_raw[:, 0, 0].tolist() == [5, 105]
    assert raw.notes == []


def test_a_flat_folder_holds_out_a_fifth_of_each_class_seeded(tmp_path):
    root = str(flat_folder(tmp_path / "pics", (10, 10, 5)))
    raw = owndata.load_own(root)
    assert raw.class_names == ("class0", "class1", "class2")
    assert np.bincount(raw.test_y).tolist() == [2, 2, 1] and np.bincount(raw.train_y).tolist() == [8, 8, 4]
    assert raw.notes == ["held out 20 % of each class for testing (stratified, seed 0): 5 test and 20 training "
                         "pictures"]
    # each picture lands in exactly one split, its label matching its brightness
    values = sorted(raw.train_raw[:, 0, 0].tolist() + raw.test_raw[:, 0, 0].tolist())
    assert values == sorted(40 * (k + 1) + i for k, n in enumerate((10, 10, 5)) for i in range(n))
    assert ((raw.test_raw[:, 0, 0] // 40 - 1) == raw.test_y).all()
    again, other = owndata.load_own(root, test_size=None), owndata.load_own(root, seed=7)  # None: DataConfig's
    assert np.array_equal(again.test_raw, raw.test_raw)
    assert not np.array_equal(other.test_raw, raw.test_raw)


def test_test_size_holds_out_that_many_pictures_stratified(tmp_path):
    raw = owndata.load_own(str(flat_folder(tmp_path / "pics", (10, 10, 10))), test_size=6)
    assert np.bincount(raw.test_y).tolist() == [2, 2, 2]
    assert "held out 6 pictures for testing (stratified, seed 0): 6 test and 24 training pictures" in raw.notes
    assert "leaves no training pictures" in error_of(str(tmp_path / "pics"), test_size=30)
    assert error_of(str(tmp_path / "pics"), test_size=29) == (
        "class(es) class0, class1 have too few pictures to hold out 29 for testing and keep some for "
        "training; pass a smaller --test-size")


def test_test_size_is_refused_when_the_folder_has_its_own_test_folder(tmp_path):
    root = split_folder(tmp_path / "pics")
    assert error_of(str(root), test_size=2) == (
        f"test_size 2 applies to a folder of class folders; {root} has its own test/ folder: drop --test-size or "
        f"the test/ folder")


# --- colour, channels and sizes ---------------------------------------------------------------------
def test_colour_decides_the_class_and_stays_three_channels(tmp_path):
    root = tmp_path / "shapes"
    for i in range(5):
        save(root / "red" / f"{i}.png", square(RED, at=i % 3))
        save(root / "green" / f"{i}.png", square(GREEN, at=i % 3))
    raw = owndata.load_own(str(root))
    assert raw.class_names == ("green", "red")
    assert raw.train_raw.shape == (8, 8, 8, 3) and raw.test_raw.shape == (2, 8, 8, 3)
    x, y = np.concatenate([raw.train_raw, raw.test_raw]), np.concatenate([raw.train_y, raw.test_y])
    brightest = x.reshape(len(x), -1, 3).max(axis=1)
    assert (brightest[y == 1] == RED).all() and (brightest[y == 0] == GREEN).all()
    # both classes hold the same shapes at the same places: only the colour separates them
    shapes = [{m.tobytes() for m in x[y == k].max(axis=3) > 0} for k in (0, 1)]
    assert shapes[0] == shapes[1] and len(shapes[0]) == 3


def test_the_most_common_channel_count_wins_and_the_rest_is_converted(tmp_path):
    root = tmp_path / "mix"
    for k in range(2):
        for i in range(3):
            save(root / f"c{k}" / f"grey{i}.png", grey(50 + 100 * k))
    save(root / "c0" / "colour.png", square(RED))
    raw = owndata.load_own(str(root))
    assert raw.train_raw.ndim == 3  # grey
    assert "6 pictures are grey and 1 colour: using 1 channel (force with --channels 1|3)" in raw.notes
    assert "1 colour picture converted to grey (1 channel)" in raw.notes
    everything = np.concatenate([raw.train_raw, raw.test_raw])
    red_as_grey = round(0.299 * RED[0] + 0.587 * RED[1] + 0.114 * RED[2])
    assert any(abs(int(x[3, 3]) - red_as_grey) <= 1 and x[0, 0] == 0 for x in everything)
    forced = owndata.load_own(str(root), channels=3)
    assert forced.train_raw.shape[-1] == 3
    assert "6 grey pictures converted to colour (3 channels)" in forced.notes
    together = np.concatenate([forced.train_raw, forced.test_raw])
    assert any((x[3, 3] == RED).all() for x in together)  # the colour picture keeps its colour


def test_grey_and_colour_palettes(tmp_path):
    root = tmp_path / "pal"
    for k in range(2):
        for i in range(2):
            save(root / f"c{k}" / f"{i}.png", grey(60 * (k + 1)))  # L
    Image.fromarray(grey(90)).convert("P").save(root / "c0" / "grey-palette.png")
    coloured = Image.fromarray(square(RED)).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    coloured.save(root / "c1" / "colour-palette.png")
    raw = owndata.load_own(str(root), test_size=2)
    assert "1 colour picture converted to grey (1 channel)" in raw.notes  # only the colour palette counts


def test_other_sizes_are_resized_to_the_most_common_one_with_a_note(tmp_path):
    root = flat_folder(tmp_path / "pics", (5, 5))
    save(root / "class0" / "big.png", grey(200, (16, 12)))
    raw = owndata.load_own(str(root))
    assert raw.train_raw.shape[1:] == (8, 8)
    assert "1 picture resized to 8×8 (the most common size)" in raw.notes
    assert (np.concatenate([raw.train_raw, raw.test_raw]) == 200).all(axis=(1, 2)).sum() == 1
    sized = owndata.load_own(str(root), image_size=(4, 6))
    assert sized.train_raw.shape[1:] == (4, 6)
    assert "11 pictures resized to 4×6 (--image-size)" in sized.notes


def test_transparency_is_flattened_onto_a_contrasting_background(tmp_path):
    root = flat_folder(tmp_path / "pics", (4, 4))
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[2:6, 2:6] = (0, 0, 0, 255)  # black ink, the rest transparent: drawn on white
    save(root / "class1" / "ink.png", rgba, "RGBA")
    raw = owndata.load_own(str(root), test_size=2)
    assert ("1 picture with transparency flattened onto a contrasting background (white behind dark content, "
            "black behind light)") in raw.notes
    everything = np.concatenate([raw.train_raw, raw.test_raw])
    ink = [x for x in everything if x[0, 0] == 255]
    assert len(ink) == 1 and (ink[0][2:6, 2:6] == 0).all()


def test_formats_and_exif_orientation(tmp_path):
    root = tmp_path / "formats"
    picture = np.zeros((6, 10), np.uint8)  # H 6, W 10
    picture[1:3, 2:8] = 200
    for k in range(2):
        save(root / f"c{k}" / "a.png", picture + k)
        Image.fromarray(picture + k).save(root / f"c{k}" / "b.BMP")
        Image.fromarray(picture + k).save(root / f"c{k}" / "c.gif")
        Image.fromarray(picture + k).save(root / f"c{k}" / "d.webp", lossless=True)
    turned = Image.fromarray(np.ascontiguousarray(np.rot90(np.repeat(picture[..., None], 3, axis=2), 1)))  # 10×6
    exif = Image.Exif()
    exif[0x0112] = 6  # "turn 90° clockwise to view"
    turned.save(root / "c0" / "e.jpg", exif=exif, quality=95)
    raw = owndata.load_own(str(root), test_size=2, channels=1)
    everything = np.concatenate([raw.train_raw, raw.test_raw])
    assert everything.shape == (9, 6, 10)
    assert not any("resized" in note for note in raw.notes)  # the JPEG, once turned, has the same size
    assert sum(np.array_equal(x, picture) or np.array_equal(x, picture + 1) for x in everything) == 8
    jpeg = [x for x in everything if not (np.array_equal(x, picture) or np.array_equal(x, picture + 1))]
    assert len(jpeg) == 1 and np.abs(jpeg[0].astype(int) - picture).max() < 40  # upright, as EXIF says


# --- bad data ----------------------------------------------------------------------------------------
def add_bad_pictures(root: Path) -> None:
    (root / "class0" / "junk.png").write_bytes(b"this is not a picture")
    good = (root / "class1" / "00.png").read_bytes()
    (root / "class1" / "cut.png").write_bytes(good[:len(good) // 2])


def test_unreadable_pictures_are_listed_or_skipped(tmp_path):
    root = flat_folder(tmp_path / "pics", (5, 5))
    add_bad_pictures(root)
    message = error_of(str(root))
    assert message.startswith(f"2 pictures in {root} cannot be read: class0/junk.png (not a picture), "
                              f"class1/cut.png (")
    assert message.endswith("fix or remove them, or pass --skip-bad to go on without them")
    raw = owndata.load_own(str(root), skip_bad=True)
    assert len(raw.train_raw) + len(raw.test_raw) == 10
    assert any(n.startswith("skipped 2 unreadable pictures: class0/junk.png (not a picture), class1/cut.png (")
               for n in raw.notes)


def test_the_list_of_unreadable_pictures_is_cut_after_a_few_names(tmp_path):
    root = flat_folder(tmp_path / "pics", (2, 2))
    for i in range(8):
        (root / "class0" / f"bad{i}.jpg").write_bytes(b"\xff\xd8\xff broken")
    message = error_of(str(root))
    assert message.startswith(f"8 pictures in {root} cannot be read: class0/bad0.jpg (")
    assert "class0/bad4.jpg" in message and "class0/bad5.jpg" not in message and "… (3 more)" in message


def test_pictures_over_the_pixel_limit_are_refused_from_their_header(tmp_path, monkeypatch):
    root = flat_folder(tmp_path / "pics", (5, 5))
    save(root / "class0" / "huge.png", grey(1, (20, 20)))
    monkeypatch.setattr(picturefiles, "MAX_PIXELS", 300)
    decode = picturefiles._decode

    def checked(path, *args):
        assert not path.endswith("huge.png"), "decoded a picture over the limit"
        return decode(path, *args)

    monkeypatch.setattr(picturefiles, "_decode", checked)
    assert "class0/huge.png (20×20 is more than 300 pixels)" in error_of(str(root), image_size=(8, 8),
                                                                         channels=1, seed=3)


@pytest.mark.parametrize("make, expected", [
    (lambda root: flat_folder(root, (4,)), "{root} holds a single class folder (class0); a classifier needs at least "
                                           "two: add one folder of pictures per class"),
    (lambda root: root.mkdir(), "no pictures found in {root}: expected {root}/<class>/ folders of "
                                "png/jpg/jpeg/bmp/gif/webp files"),
    (lambda root: (flat_folder(root, (3, 3)), (root / "empty").mkdir()),
     "class folder(s) empty in {root} hold no pictures; add pictures or remove the folder(s)"),
    (lambda root: root.write_text("x"), "{root} is not a folder; give folder:PATH where PATH holds one folder of "
                                        "pictures per class"),
    (lambda root: None, "folder not found: {root}; give folder:PATH with PATH/<class>/ or PATH/train/<class>/ and "
                        "PATH/test/<class>/ folders of pictures"),
])
def test_bad_folders_are_one_line_each(tmp_path, make, expected):
    root = tmp_path / "pics"
    make(root)
    assert error_of(str(root)) == expected.format(root=root)


def test_a_test_class_missing_from_train_and_an_empty_test_split(tmp_path):
    root = split_folder(tmp_path / "pics")
    save(root / "test" / "zebra" / "0.png", grey(9))
    assert error_of(str(root)) == (f"{root / 'test'} has class folder(s) zebra that {root / 'train'} lacks; the "
                                   f"test classes must be training classes (a, b)")
    empty = split_folder(tmp_path / "empty")
    for picture in (empty / "test").rglob("*.png"):
        picture.unlink()
    assert error_of(str(empty)) == f"the test split of {empty} holds no readable pictures; add pictures to it"


def test_a_train_class_without_test_pictures_is_noted(tmp_path):
    root = split_folder(tmp_path / "pics")
    (root / "test" / "b" / "0.png").unlink()
    (root / "test" / "b").rmdir()
    raw = owndata.load_own(str(root))
    assert "no test folder for class(es) b" in raw.notes and raw.test_y.tolist() == [0]


@pytest.mark.parametrize("kwargs, expected", [
    ({"channels": 2}, "channels must be 1 or 3, received 2"),
    ({"image_size": (0, 5)}, "image_size must be two positive integers H W with H × W ≤ 16,777,216, received (0, 5)"),
    ({"image_size": 28}, "image_size must be two positive integers H W with H × W ≤ 16,777,216, received 28"),
    ({"test_size": -1}, "test_size must be a non-negative integer (0: 20 % of each class), received -1"),
    ({"seed": True}, "seed must be an integer in [0, 4294967295], received True"),
])
def test_settings_are_checked(tmp_path, kwargs, expected):
    assert error_of(str(tmp_path), **kwargs) == expected


# --- links, hidden files, other files ------------------------------------------------------------------
def test_links_leaving_the_folder_are_skipped_and_noted(tmp_path):
    root = flat_folder(tmp_path / "pics", (5, 5))
    outside = save(tmp_path / "secret" / "private.png", grey(7))
    os.symlink(outside, root / "class0" / "escape.png")
    os.symlink(outside.parent, root / "class2")
    os.symlink(root / "class1" / "00.png", root / "class0" / "inside.png")  # stays inside: followed
    (root / "class0" / ".hidden.png").write_bytes(b"junk")  # hidden: never read
    (root / "class0" / "notes.txt").write_text("x")
    raw = owndata.load_own(str(root))
    assert raw.class_names == ("class0", "class1")
    assert f"skipped 2 links leading outside {root} (never followed): class0/escape.png, class2" in raw.notes
    assert "ignored 1 file of other types (pictures are .png, .jpg, .jpeg, .bmp, .gif, .webp): class0/notes.txt" \
        in raw.notes
    everything = np.concatenate([raw.train_raw, raw.test_raw])
    assert len(everything) == 11 and not (everything == 7).all(axis=(1, 2)).any()


# --- the cache -------------------------------------------------------------------------------------------
def cache_files() -> list[Path]:
    return sorted((Path(os.environ["XDG_CACHE_HOME"]) / "cnnscope" / "folders").glob("*.npz"))


def test_the_second_load_reads_the_cache_without_decoding(tmp_path, monkeypatch):
    root = str(flat_folder(tmp_path / "pics", (5, 5)))
    first = owndata.load_own(root, skip_bad=True)
    assert len(cache_files()) == 1
    monkeypatch.setattr(Image, "open", lambda *a, **k: pytest.fail("decoded again"))
    second = owndata.load_own(root, skip_bad=True)
    for key in ("train_raw", "train_y", "test_raw", "test_y", "class_names", "notes"):
        assert np.array_equal(getattr(first, key), getattr(second, key)), key
    assert second.train_y.dtype == np.int64 and second.class_names == first.class_names


def test_a_new_seed_or_test_size_splits_the_cached_pictures_again(tmp_path, monkeypatch):
    root = str(flat_folder(tmp_path / "pics", (10, 10)))
    first = owndata.load_own(root)
    monkeypatch.setattr(Image, "open", lambda *a, **k: pytest.fail("decoded again"))
    other = owndata.load_own(root, seed=5, test_size=4)
    assert len(other.test_raw) == 4 and len(first.test_raw) == 4
    assert not np.array_equal(other.test_raw, first.test_raw)
    assert other.notes[-1] == ("held out 4 pictures for testing (stratified, seed 5): 4 test and 16 training "
                               "pictures")
    assert len(cache_files()) == 1


def test_a_changed_file_or_setting_decodes_again(tmp_path):
    root = flat_folder(tmp_path / "pics", (5, 5))
    first = owndata.load_own(str(root))
    picture = root / "class0" / "00.png"
    save(picture, grey(250))
    os.utime(picture, ns=(picture.stat().st_atime_ns, picture.stat().st_mtime_ns + 10**9))
    second = owndata.load_own(str(root))
    before = np.concatenate([first.train_raw, first.test_raw])[:, 0, 0]
    after = np.concatenate([second.train_raw, second.test_raw])[:, 0, 0]
    assert 250 in after and 250 not in before
    assert len(cache_files()) == 1  # the stale file list's cache was dropped
    owndata.load_own(str(root), image_size=(4, 4))
    assert len(cache_files()) == 2  # other settings keep their own cache


def test_a_corrupt_cache_file_is_ignored_and_rebuilt(tmp_path, caplog):
    root = str(flat_folder(tmp_path / "pics", (5, 5)))
    first = owndata.load_own(root)
    [path] = cache_files()
    path.write_bytes(b"PK\x03\x04 not a zip at all")
    with caplog.at_level(logging.WARNING, logger="cnnscope"):
        again = owndata.load_own(root)
    assert np.array_equal(again.train_raw, first.train_raw)
    assert "cached pictures cannot be read" in caplog.text and "decoding the folder again" in caplog.text
    assert owndata.read_cache(path, 2) is not None  # rebuilt


def test_a_cache_with_wrong_arrays_is_ignored(tmp_path):
    root = str(flat_folder(tmp_path / "pics", (5, 5)))
    first = owndata.load_own(root)
    [path] = cache_files()
    pixels = np.concatenate([first.train_raw, first.test_raw])
    labels = np.concatenate([first.train_y, first.test_y])
    for wrong in ({"pixels": pixels.astype(np.float32)}, {"labels": labels + 5}, {"in_test": np.zeros(3, bool)}):
        arrays = {"pixels": pixels, "labels": labels, "in_test": np.zeros(len(labels), bool),
                  "notes": np.array(first.notes), **wrong}
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)
        assert owndata.read_cache(path, 2) is None, wrong
    assert owndata.load_own(root).train_raw.dtype == np.uint8


def test_the_process_pool_gives_the_same_pictures(tmp_path, monkeypatch):
    root = str(flat_folder(tmp_path / "pics", (6, 6)))
    alone = owndata.load_own(root, image_size=(8, 8), channels=1)
    monkeypatch.setattr(owndata, "POOL_MIN", 1)
    monkeypatch.setattr(owndata, "CHUNK", 5)
    pooled = owndata.load_own(root, image_size=(8, 8), channels=1, seed=0, skip_bad=True)  # another cache key
    assert np.array_equal(alone.train_raw, pooled.train_raw) and np.array_equal(alone.test_y, pooled.test_y)


def test_an_unwritable_cache_is_logged_and_the_pictures_still_load(tmp_path, monkeypatch, caplog):
    root = str(flat_folder(tmp_path / "pics", (5, 5)))
    (tmp_path / "not-a-folder").write_text("x")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "not-a-folder"))
    with caplog.at_level(logging.WARNING, logger="cnnscope"):
        raw = owndata.load_own(root)
    assert len(raw.train_raw) == 8 and "cannot cache the decoded pictures" in caplog.text


def test_a_progress_bar_on_the_first_decode_only_when_asked(tmp_path, capsys):
    root = str(flat_folder(tmp_path / "pics", (5, 5)))
    owndata.load_own(root, progress=False)
    assert "decoding pictures" not in capsys.readouterr().err
    owndata.load_own(root, image_size=(4, 4), progress=True)
    assert "decoding pictures" in capsys.readouterr().err


# --- very large pictures (issue 21, item 5) ------------------------------------------------------------------
def stroke_rgba(size: int) -> np.ndarray:
    """A transparent size² RGBA picture with an opaque black bar across its middle (a drawing app's export)."""
    x = np.zeros((size, size, 4), np.uint8)
    x[size // 3: 2 * size // 3, :, 3] = 255
    return x


def test_large_pictures_are_reduced_before_any_float_conversion(tmp_path):
    import tracemalloc

    path = save(tmp_path / "big.png", stroke_rgba(2048), "RGBA")
    tracemalloc.start()
    try:
        pixels, whys, counts = picturefiles.decode_chunk([str(path)], (28, 28), 1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # before: a float32 RGBA copy of the whole picture (64 MiB) and more; numpy's allocations are traced
    assert whys == [""] and peak < 4 * 2**20, peak
    assert counts == {"converted": 1, "flattened": 1, "resized": 1}
    assert pixels[0, 14].mean() < 50 and pixels[0, 2].mean() > 200  # the black bar, on white behind it


def test_reduction_averages_transparent_pictures_premultiplied():
    x = np.zeros((64, 64, 4), np.uint8)
    x[::2, :, :] = (255, 255, 255, 255)  # opaque white rows between transparent black ones
    reduced = picturefiles.reduce_towards(Image.fromarray(x, "RGBA"), (8, 8))
    out = np.asarray(reduced)
    assert reduced.mode == "RGBA" and out.shape == (8, 8, 4)
    assert (out[..., :3] >= 254).all() and (abs(out[..., 3].astype(int) - 128) <= 1).all()  # white, half covered
    palette = Image.fromarray(np.zeros((64, 64), np.uint8), "L").convert("P")
    assert picturefiles.reduce_towards(palette, (8, 8)).size == (8, 8)
    assert picturefiles.reduce_towards(palette, (40, 40)).size == (64, 64)  # not twice as large: unchanged


def test_the_automatic_size_is_capped_with_a_note(tmp_path):
    for k in range(2):
        for i in range(2):
            save(tmp_path / "f" / f"c{k}" / f"{i}.png", np.full((600, 400), 60 * k + 10 * i, np.uint8))
    raw = owndata.load_own(str(tmp_path / "f"), test_size=2, progress=False)
    assert raw.train_raw.shape[1:] == (256, 171)
    assert ("4 pictures resized to 256×171 (the most common size, 600×400, scaled to a longer side of 256; "
            "--image-size H W to choose)") in raw.notes


def test_the_folder_cache_is_bounded_least_recently_used_first(tmp_path):
    folder = tmp_path / "folders"
    folder.mkdir()
    for k, name in enumerate(["old.npz", "mid.npz", "new.npz", "kept.npz"]):
        (folder / name).write_bytes(b"\0" * 100)
        os.utime(folder / name, ns=(10**18 + k, 10**18 + k))
    os.utime(folder / "kept.npz", ns=(10**17, 10**17))  # the oldest, but the one just written
    owndata.prune_cache(folder, keep=folder / "kept.npz", limit=250)
    assert sorted(p.name for p in folder.iterdir()) == ["kept.npz", "new.npz"]

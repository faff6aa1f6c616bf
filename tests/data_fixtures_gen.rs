//! Writes the committed fixtures under `tests/data/fixtures/` (run once by hand:
//! `cargo test --test data_fixtures_gen -- --ignored`). The fixtures are committed, so the
//! other tests do not depend on this file; it documents how each byte was made.

use std::fs;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::codecs::jpeg::JpegEncoder;
use image::{DynamicImage, ImageBuffer, ImageFormat, Luma, LumaA, Rgb, Rgba};

fn root() -> PathBuf {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    Path::new(&dir).join("tests/data/fixtures")
}

fn put(path: &Path, bytes: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

fn gradient(w: u32, h: u32, tint: [u8; 3]) -> ImageBuffer<Rgb<u8>, Vec<u8>> {
    ImageBuffer::from_fn(w, h, |x, y| {
        let t = ((x + y) * 255 / (w + h)) as u16;
        Rgb(tint.map(|c| ((u16::from(c) + t) / 2) as u8))
    })
}

fn png(img: DynamicImage) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, ImageFormat::Png).unwrap();
    out.into_inner()
}

fn jpeg(img: &ImageBuffer<Rgb<u8>, Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, 60).encode_image(img).unwrap();
    out
}

fn grey_jpeg(w: u32, h: u32) -> Vec<u8> {
    let img: ImageBuffer<Luma<u8>, Vec<u8>> = ImageBuffer::from_fn(w, h, |x, _| Luma([(x * 10) as u8]));
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, 60).encode_image(&img).unwrap();
    out
}

fn captions(subject: &str, n: usize) -> String {
    (0..n).map(|i| format!("caption {i} of {subject}, a small bird with a short beak\n")).collect()
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32(&body).to_be_bytes());
}

/// A valid PNG header claiming 100000×100000 RGB, followed by a tiny IDAT and IEND.
fn bomb_png() -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    // zlib stream of a few zero bytes (stored block), far short of the claimed size.
    chunk(&mut out, b"IDAT", &[0x78, 0x01, 0x01, 0x04, 0x00, 0xfb, 0xff, 0, 0, 0, 0, 0, 0x04, 0x00, 0x01]);
    chunk(&mut out, b"IEND", &[]);
    out
}

fn cub(root: &Path) {
    let classes = ["001.Red_Bird", "002.Blue_Bird", "003.Green_Bird"];
    put(&root.join("allclasses.txt"), classes.join("\n").as_bytes());
    put(&root.join("trainvalclasses.txt"), b"001.Red_Bird\n002.Blue_Bird\n");
    put(&root.join("testclasses.txt"), b"003.Green_Bird\n");
    let tints = [[200, 30, 30], [30, 30, 200], [30, 200, 30]];
    for (c, class) in classes.iter().enumerate() {
        for k in 0..2 {
            let stem = format!("{}_{:04}", &class[4..], k + 1);
            put(&root.join("images").join(class).join(format!("{stem}.jpg")), &jpeg(&gradient(20, 16, tints[c])));
            let mut caps = captions(&stem, 10);
            if c == 0 && k == 0 {
                caps.push_str("A Bird With Ünusual Colours\n");
            }
            put(&root.join("text_c10").join(class).join(format!("{stem}.txt")), caps.as_bytes());
        }
    }
}

fn oxford(root: &Path) {
    let classes = ["class_00001", "class_00002", "class_00003"];
    put(&root.join("allclasses.txt"), classes.join("\n").as_bytes());
    put(&root.join("trainvalclasses.txt"), b"class_00001\nclass_00002\n");
    put(&root.join("testclasses.txt"), b"class_00003\n");
    for (c, class) in classes.iter().enumerate() {
        for k in 0..2 {
            let n = c * 2 + k + 1;
            let stem = format!("image_{n:05}");
            let bytes = if n == 4 { grey_jpeg(16, 16) } else { jpeg(&gradient(16, 20, [250, 120, 40])) };
            put(&root.join("jpg").join(format!("{stem}.jpg")), &bytes);
            put(&root.join("text_c10").join(class).join(format!("{stem}.txt")), captions(&stem, 10).as_bytes());
        }
    }
}

fn folder(root: &Path) {
    put(&root.join("cat.png"), &png(DynamicImage::ImageRgb8(gradient(16, 16, [90, 90, 90]))));
    put(&root.join("cat.txt"), b"a gray cat\na cat sitting\n");
    put(&root.join("dog.jpg"), &jpeg(&gradient(16, 16, [160, 110, 60])));
    put(&root.join("dog.txt"), b"a brown dog\n\n  \na dog running  \n");
    let rgba16: ImageBuffer<Rgba<u16>, Vec<u16>> =
        ImageBuffer::from_fn(12, 12, |x, y| Rgba([(x * 5000) as u16, (y * 5000) as u16, 30000, 40000]));
    put(&root.join("birds/a.png"), &png(DynamicImage::ImageRgba16(rgba16)));
    put(&root.join("birds/a.txt"), b"a bird in 16-bit rgba\n");
    let la: ImageBuffer<LumaA<u8>, Vec<u8>> = ImageBuffer::from_fn(12, 12, |x, _| LumaA([(x * 20) as u8, 200]));
    put(&root.join("birds/b.png"), &png(DynamicImage::ImageLumaA8(la)));
    put(&root.join("birds/b.txt"), b"a bird in grey with alpha\n");
    put(&root.join("testclasses.txt"), b"dog\n");
}

fn broken(root: &Path) {
    put(&root.join("allclasses.txt"), b"001.good\n002.bad\n003.no_caption_folder\n");
    put(&root.join("trainvalclasses.txt"), b"001.good\n002.bad\n003.no_caption_folder\n");
    // testclasses.txt deliberately missing.
    for k in 1..=3 {
        let stem = format!("good_{k}");
        put(
            &root.join(format!("images/001.good/{stem}.png")),
            &png(DynamicImage::ImageRgb8(gradient(16, 16, [10, 200, 90]))),
        );
        put(&root.join(format!("text_c10/001.good/{stem}.txt")), captions(&stem, 10).as_bytes());
    }
    let good_png = png(DynamicImage::ImageRgb8(gradient(32, 32, [200, 200, 10])));
    let good_jpg = jpeg(&gradient(32, 32, [10, 10, 200]));
    let bad = root.join("images/002.bad");
    let text = root.join("text_c10/002.bad");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated_png.png", good_png[..good_png.len() / 2].to_vec()),
        ("truncated_jpeg.jpg", good_jpg[..good_jpg.len() * 6 / 10].to_vec()),
        ("zero_bytes.png", Vec::new()),
        ("one_pixel.png", png(DynamicImage::ImageRgb8(gradient(1, 1, [0, 0, 0])))),
        ("bomb.png", bomb_png()),
        ("not_an_image.png", b"<html>404 not found</html>".to_vec()),
    ];
    for (name, bytes) in cases {
        put(&bad.join(name), &bytes);
        let stem = name.split('.').next().unwrap();
        put(&text.join(format!("{stem}.txt")), captions(stem, 10).as_bytes());
    }
    put(&bad.join("no_captions.png"), &good_png);
    put(&bad.join("empty_captions.png"), &good_png);
    put(&text.join("empty_captions.txt"), b"\n  \n");
    put(&text.join("missing_image.txt"), captions("missing", 10).as_bytes());
    // 003.no_caption_folder has images but no text_c10 folder.
    put(&root.join("images/003.no_caption_folder/lonely.png"), &good_png);

    let ncl = root.parent().unwrap().join("no_class_list");
    put(&ncl.join("images/001.a/x.png"), &good_png);
    put(&ncl.join("text_c10/001.a/x.txt"), b"a caption\n");
}

#[test]
#[ignore = "writes the committed fixtures; run by hand"]
fn regenerate_fixtures() {
    let r = root();
    let _ = fs::remove_dir_all(&r);
    cub(&r.join("cub"));
    oxford(&r.join("oxford"));
    folder(&r.join("folder"));
    broken(&r.join("broken"));
}

//! Pairing links as QR codes, drawn as one SVG path.
//!
//! The agent encodes the QR code (the `qrcode` crate) so the page only has to place a path
//! in an `<svg>`: a QR encoder in the browser would cost the page a twentieth of its size
//! budget. The path fills each horizontal run of dark modules with one rectangle, in module
//! units, with the four-module quiet zone a scanner needs included in the size.

use pryx_api::QrImage;
use qrcode::{Color, EcLevel, QrCode};

/// Light modules around the code, as the QR standard asks.
const QUIET_ZONE: usize = 4;

/// `text` as a QR code (error correction M: readable off a screen with glare), or `None`
/// when it is too long for one.
pub fn encode(text: &str) -> Option<QrImage> {
    let code = QrCode::with_error_correction_level(text, EcLevel::M).ok()?;
    let width = code.width();
    let colors = code.to_colors();
    let mut path = String::new();
    for (y, row) in colors.chunks(width).enumerate() {
        let mut x = 0;
        while x < width {
            if row[x] == Color::Light {
                x += 1;
                continue;
            }
            let start = x;
            while x < width && row[x] == Color::Dark {
                x += 1;
            }
            let run = x - start;
            path.push_str(&format!("M{} {}h{run}v1h-{run}z", start + QUIET_ZONE, y + QUIET_ZONE));
        }
    }
    Some(QrImage { size: (width + 2 * QUIET_ZONE) as u32, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Paint the path's rectangles (the only shapes `encode` draws) at `scale` pixels per
    /// module, as a screen would show them.
    fn raster(image: &QrImage, scale: usize) -> (usize, Vec<bool>) {
        let side = image.size as usize * scale;
        let mut pixels = vec![false; side * side];
        for shape in image.path.split('z').filter(|s| !s.is_empty()) {
            let numbers: Vec<usize> = shape
                .trim_start_matches('M')
                .split(['h', 'v', ' '])
                .filter(|s| !s.is_empty() && !s.starts_with('-'))
                .map(|n| n.parse().expect("a number"))
                .collect();
            let [x, y, run, _one] = numbers[..] else { panic!("unexpected shape {shape}") };
            for py in y * scale..(y + 1) * scale {
                for px in x * scale..(x + run) * scale {
                    pixels[py * side + px] = true;
                }
            }
        }
        (side, pixels)
    }

    #[test]
    fn a_scanner_reads_the_link_back() {
        let link = "https://t.me/pryx_test_bot?start=K7XQ2M9P";
        let image = encode(link).expect("a link fits");
        let (side, pixels) = raster(&image, 4);
        let mut prepared = rqrr::PreparedImage::prepare_from_bitmap(side, side, |x, y| pixels[y * side + x]);
        let grids = prepared.detect_grids();
        assert_eq!(grids.len(), 1, "one code found");
        let (_, content) = grids[0].decode().expect("it decodes");
        assert_eq!(content, link);
    }

    #[test]
    fn the_quiet_zone_is_part_of_the_size() {
        let image = encode("https://wa.me/15551234567?text=K7XQ2M9P").expect("fits");
        // Version 3 (29 modules) at level M holds this link; plus 4 light modules a side.
        assert_eq!(image.size, 29 + 8);
        assert!(image.path.starts_with("M4 4h7v1h-7z"), "the top-left finder starts at the quiet zone");
    }

    #[test]
    fn text_too_long_for_a_code_is_refused() {
        assert!(encode(&"x".repeat(4000)).is_none());
    }
}

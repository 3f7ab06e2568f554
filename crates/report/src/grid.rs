//! Labelled image grids (e.g. rows of x, x0, x_r for D_R, or x, x_adv with true and target
//! labels for D_det), written as PNG with the image crate; text drawn with the embedded font.
use crate::plot::save_rgb_png;
use crate::text::{draw_text, text_width, HAlign, TextStyle, VAlign};
use anyhow::{anyhow, bail, Result};
use plotters::prelude::*;
use std::path::Path;

/// One image of a grid row.
#[derive(Debug, Clone, PartialEq)]
pub struct GridCell {
    /// Pixels in [0, 1], layout CHW (C = 1 grey or 3 RGB), length C·H·W.
    pub pixels: Vec<f32>,
    /// Caption under the image; `\n` separates lines (e.g. "x_adv\ntrue 3 → target 4").
    pub caption: String,
}

/// A row of the grid: a label on the left and its cells.
#[derive(Debug, Clone, PartialEq)]
pub struct GridRow {
    /// Row label (`\n` separates lines).
    pub label: String,
    /// Images of the row.
    pub cells: Vec<GridCell>,
}

const PAD: u32 = 8;
const CAPTION_PX: f64 = 13.0;
const CAPTION_LINE: u32 = 16;
const LABEL_PX: f64 = 15.0;
const LABEL_LINE: u32 = 19;

/// Tolerance for pixel values slightly outside [0, 1] (float noise); they are clamped.
const RANGE_TOL: f32 = 1e-3;

fn block_size(text: &str, px: f64, line: u32, bold: bool) -> Result<(u32, u32)> {
    let mut w = 0;
    let mut n = 0;
    for l in text.lines() {
        w = w.max(text_width(l, px, bold)?.ceil() as u32);
        n += 1;
    }
    Ok((w, n * line))
}

/// Writes a PNG grid of labelled images to `path` (atomically).
///
/// `shape` is [C, H, W] of every cell (C ∈ {1, 3}); each image is enlarged `scale` times
/// (nearest neighbour, 1..=16). Errors name the row and cell: wrong length, non-finite values,
/// values outside [0, 1] (beyond a 1e-3 tolerance, which is clamped).
///
/// ```no_run
/// use nrf_report::{image_grid, GridCell, GridRow};
/// let x = vec![0.5f32; 28 * 28];
/// let rows = vec![GridRow {
///     label: "D_R".into(),
///     cells: vec![GridCell { pixels: x.clone(), caption: "x (label 3)".into() },
///                 GridCell { pixels: x, caption: "x_r".into() }],
/// }];
/// image_grid("results/fmnist/grids/D_R.png", &rows, [1, 28, 28], 3).unwrap();
/// ```
pub fn image_grid(
    path: impl AsRef<Path>,
    rows: &[GridRow],
    shape: [usize; 3],
    scale: u32,
) -> Result<()> {
    let path = path.as_ref();
    check_grid_input(path, rows, shape, scale)?;
    let layout = grid_layout(path, rows, shape, scale)?;
    let mut buf = vec![255u8; layout.total_w as usize * layout.total_h as usize * 3];
    // Images first (direct pixel writes), then text through plotters on the same buffer.
    draw_images(&mut buf, rows, &layout, shape, scale);
    draw_grid_text(&mut buf, rows, &layout)?;
    save_rgb_png(path, layout.total_w, layout.total_h, buf)
}

/// Checks `image_grid`'s arguments: the shape, the scale, that there are images, and every
/// cell's length and pixel values (errors name the row and cell).
fn check_grid_input(path: &Path, rows: &[GridRow], shape: [usize; 3], scale: u32) -> Result<()> {
    let [c, h, w] = shape;
    if !(c == 1 || c == 3) || h == 0 || w == 0 || h > 4096 || w > 4096 {
        bail!(
            "image grid {}: shape [{c}, {h}, {w}] must be [1 or 3, H, W] with 0 < H, W ≤ 4096",
            path.display()
        );
    }
    if !(1..=16).contains(&scale) {
        bail!(
            "image grid {}: scale {scale} must be in 1..=16",
            path.display()
        );
    }
    if rows.is_empty() || rows.iter().all(|r| r.cells.is_empty()) {
        bail!("image grid {}: no images", path.display());
    }
    let n = c * h * w;
    for (ri, r) in rows.iter().enumerate() {
        for (ci, cell) in r.cells.iter().enumerate() {
            let at = || {
                format!(
                    "image grid {}: row {ri} ({:?}) cell {ci}",
                    path.display(),
                    r.label
                )
            };
            if cell.pixels.len() != n {
                bail!(
                    "{}: {} values, expected {n} for shape [{c}, {h}, {w}]",
                    at(),
                    cell.pixels.len()
                );
            }
            if let Some((i, v)) = cell
                .pixels
                .iter()
                .enumerate()
                .find(|(_, v)| !v.is_finite() || **v < -RANGE_TOL || **v > 1.0 + RANGE_TOL)
            {
                bail!("{}: pixel {i} = {v} is not in [0, 1]", at());
            }
        }
    }
    Ok(())
}

/// Pixel sizes of a grid, in the enlarged output image.
struct GridLayout {
    /// Width of one enlarged image.
    img_w: u32,
    /// Height of one enlarged image.
    img_h: u32,
    /// Width of the label column on the left.
    label_col: u32,
    /// Width of one cell (image or widest caption, with padding).
    cell_w: u32,
    /// Height of each row.
    row_heights: Vec<u32>,
    /// Width of the whole grid.
    total_w: u32,
    /// Height of the whole grid.
    total_h: u32,
}

/// The grid's layout for `rows` of images of `shape` enlarged `scale` times; errors if the
/// picture would be too large.
fn grid_layout(path: &Path, rows: &[GridRow], shape: [usize; 3], scale: u32) -> Result<GridLayout> {
    let [_, h, w] = shape;
    let (img_w, img_h) = (w as u32 * scale, h as u32 * scale);
    let mut label_w = 0;
    for r in rows {
        label_w = label_w.max(block_size(&r.label, LABEL_PX, LABEL_LINE, true)?.0);
    }
    let label_col = if label_w > 0 { label_w + 2 * PAD } else { PAD };
    let mut cell_w = img_w;
    let mut max_lines = 0;
    for r in rows {
        for cell in &r.cells {
            let (cw, ch) = block_size(&cell.caption, CAPTION_PX, CAPTION_LINE, false)?;
            cell_w = cell_w.max(cw);
            max_lines = max_lines.max(ch / CAPTION_LINE);
        }
    }
    let cell_w = cell_w + 2 * PAD;
    let cols = rows.iter().map(|r| r.cells.len()).max().unwrap_or(0) as u32;
    let mut row_heights = Vec::with_capacity(rows.len());
    for r in rows {
        let label_h = block_size(&r.label, LABEL_PX, LABEL_LINE, true)?.1;
        let body = img_h + 4 + max_lines * CAPTION_LINE;
        row_heights.push(body.max(label_h) + 2 * PAD);
    }
    let total_w = label_col + cols * cell_w + PAD;
    let total_h: u32 = row_heights.iter().sum::<u32>() + PAD;
    if (total_w as u64) * (total_h as u64) > 100_000_000 {
        bail!(
            "image grid {}: {total_w}x{total_h} pixels is too large",
            path.display()
        );
    }

    Ok(GridLayout {
        img_w,
        img_h,
        label_col,
        cell_w,
        row_heights,
        total_w,
        total_h,
    })
}

/// Writes every cell's enlarged image (nearest neighbour) and its frame into `buf`.
fn draw_images(
    buf: &mut [u8],
    rows: &[GridRow],
    layout: &GridLayout,
    shape: [usize; 3],
    scale: u32,
) {
    let [c, h, w] = shape;
    let GridLayout {
        img_w,
        img_h,
        label_col,
        cell_w,
        total_w,
        ..
    } = *layout;
    let mut y0 = PAD / 2;
    for (r, rh) in rows.iter().zip(&layout.row_heights) {
        for (ci, cell) in r.cells.iter().enumerate() {
            let x0 = label_col + ci as u32 * cell_w + (cell_w - img_w) / 2;
            let top = y0 + PAD;
            for yy in 0..img_h {
                for xx in 0..img_w {
                    let (sy, sx) = ((yy / scale) as usize, (xx / scale) as usize);
                    let px = |ch: usize| -> u8 {
                        let v = cell.pixels[ch * h * w + sy * w + sx].clamp(0.0, 1.0);
                        (v * 255.0).round() as u8
                    };
                    let rgb = if c == 1 {
                        [px(0); 3]
                    } else {
                        [px(0), px(1), px(2)]
                    };
                    let o = (((top + yy) * total_w + x0 + xx) * 3) as usize;
                    buf[o..o + 3].copy_from_slice(&rgb);
                }
            }
            draw_frame(buf, layout, x0, top);
        }
        y0 += rh;
    }
}

/// Draws a 1-px grey frame around the image whose top-left corner is (`x0`, `top`).
fn draw_frame(buf: &mut [u8], layout: &GridLayout, x0: u32, top: u32) {
    let GridLayout {
        img_w,
        img_h,
        total_w,
        total_h,
        ..
    } = *layout;
    // 1-px frame so light images stand out from the background.
    let frame = [200u8, 200, 200];
    for xx in x0.saturating_sub(1)..=(x0 + img_w).min(total_w - 1) {
        for yy in [top.saturating_sub(1), (top + img_h).min(total_h - 1)] {
            let o = ((yy * total_w + xx) * 3) as usize;
            buf[o..o + 3].copy_from_slice(&frame);
        }
    }
    for yy in top.saturating_sub(1)..=(top + img_h).min(total_h - 1) {
        for xx in [x0.saturating_sub(1), (x0 + img_w).min(total_w - 1)] {
            let o = ((yy * total_w + xx) * 3) as usize;
            buf[o..o + 3].copy_from_slice(&frame);
        }
    }
}

/// Draws the row labels and the cell captions into `buf` through plotters.
fn draw_grid_text(buf: &mut [u8], rows: &[GridRow], layout: &GridLayout) -> Result<()> {
    let GridLayout {
        img_h,
        label_col,
        cell_w,
        total_w,
        total_h,
        ..
    } = *layout;
    let root = BitMapBackend::with_buffer(buf, (total_w, total_h)).into_drawing_area();
    let label_style = TextStyle::new(LABEL_PX)
        .bold()
        .anchor(HAlign::Left, VAlign::Top);
    let cap_style = TextStyle::new(CAPTION_PX).anchor(HAlign::Center, VAlign::Top);
    let mut y0 = PAD / 2;
    for (r, rh) in rows.iter().zip(&layout.row_heights) {
        let lines: Vec<&str> = r.label.lines().collect();
        let block = lines.len() as u32 * LABEL_LINE;
        let ly = y0 + PAD + img_h.saturating_sub(block) / 2;
        for (i, l) in lines.iter().enumerate() {
            draw_text(
                &root,
                l,
                (PAD as i32, (ly + i as u32 * LABEL_LINE) as i32),
                &label_style,
            )?;
        }
        for (ci, cell) in r.cells.iter().enumerate() {
            let cx = label_col + ci as u32 * cell_w + cell_w / 2;
            for (i, l) in cell.caption.lines().enumerate() {
                let y = y0 + PAD + img_h + 5 + i as u32 * CAPTION_LINE;
                draw_text(&root, l, (cx as i32, y as i32), &cap_style)?;
            }
        }
        y0 += rh;
    }
    root.present()
        .map_err(|e| anyhow!("drawing grid text: {e:?}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(c: usize, h: usize, w: usize) -> Vec<f32> {
        (0..c * h * w).map(|i| (i % 97) as f32 / 96.0).collect()
    }

    #[test]
    fn grey_and_rgb_grids() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.png");
        let rows = vec![
            GridRow {
                label: "D_R".into(),
                cells: vec![
                    GridCell {
                        pixels: ramp(1, 8, 8),
                        caption: "x".into(),
                    },
                    GridCell {
                        pixels: ramp(1, 8, 8),
                        caption: "x_r\nlabel 3".into(),
                    },
                ],
            },
            GridRow {
                label: "D_NR\nrow 2".into(),
                cells: vec![GridCell {
                    pixels: vec![1.0005; 64],
                    caption: "".into(),
                }],
            },
        ];
        image_grid(&p, &rows, [1, 8, 8], 3).unwrap();
        let img = image::open(&p).unwrap().to_rgb8();
        assert!(img.width() >= 2 * 24 && img.height() >= 2 * 24);
        // The clamped all-white cell and the ramp's black pixel both appear.
        assert!(img.pixels().any(|px| px.0 == [0, 0, 0]));

        let rgb = vec![GridRow {
            label: "rgb".into(),
            cells: vec![GridCell {
                pixels: ramp(3, 4, 5),
                caption: "c".into(),
            }],
        }];
        image_grid(&p, &rgb, [3, 4, 5], 2).unwrap();
    }

    #[test]
    fn bad_cells_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.png");
        let row = |px: Vec<f32>| {
            vec![GridRow {
                label: "D_det".into(),
                cells: vec![GridCell {
                    pixels: px,
                    caption: "x".into(),
                }],
            }]
        };
        let e = format!(
            "{:#}",
            image_grid(&p, &row(vec![0.0; 10]), [1, 4, 4], 1).unwrap_err()
        );
        assert!(e.contains("\"D_det\"") && e.contains("expected 16"), "{e}");
        let mut px = vec![0.0; 16];
        px[3] = f32::NAN;
        let e = format!("{:#}", image_grid(&p, &row(px), [1, 4, 4], 1).unwrap_err());
        assert!(e.contains("pixel 3"), "{e}");
        let e = format!(
            "{:#}",
            image_grid(&p, &row(vec![2.0; 16]), [1, 4, 4], 1).unwrap_err()
        );
        assert!(e.contains("not in [0, 1]"), "{e}");
        assert!(image_grid(&p, &row(vec![0.0; 16]), [2, 4, 4], 1).is_err());
        assert!(image_grid(&p, &row(vec![0.0; 16]), [1, 4, 4], 0).is_err());
        assert!(image_grid(&p, &[], [1, 4, 4], 1).is_err());
        assert!(!p.exists());
    }
}

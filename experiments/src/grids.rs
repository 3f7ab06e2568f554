//! Image grids of constructed datasets, so a reader sees what the data look like.
use crate::pipeline::Ctx;
use anyhow::Result;
use nrf_data::store::ConstructedDataset;
use nrf_report::{image_grid, GridCell, GridRow};

const ROWS: usize = 8;

fn class(ctx: &Ctx, y: i64) -> String {
    ctx.train
        .class_names
        .get(y as usize)
        .cloned()
        .unwrap_or_else(|| y.to_string())
}

fn scale(shape: [usize; 3]) -> u32 {
    (96 / shape[1].max(1)).clamp(1, 4) as u32
}

/// Where the grid of constructed set `name` goes, relative to the results folder.
pub fn grid_path(name: &str) -> String {
    format!("grids/{name}.png")
}

/// Rows of (x0 start, x_r result, x target) for D_R / D_NR; returns the grid's relative path.
pub fn rep_grid(
    ctx: &Ctx,
    name: &str,
    ds: &ConstructedDataset,
    starts: &[i64],
) -> Result<Option<String>> {
    let d = &ds.dataset;
    let rows: Vec<GridRow> = (0..d.len().min(ROWS))
        .map(|i| {
            let target = ds.source_indices[i] as usize;
            let mut cells = Vec::new();
            if let Some(&s) = starts.get(i).filter(|&&s| s >= 0) {
                cells.push(GridCell {
                    pixels: ctx.train.image(s as usize).to_vec(),
                    caption: format!("x0 start\n{}", class(ctx, ctx.train.labels[s as usize])),
                });
            }
            cells.push(GridCell {
                pixels: d.image(i).to_vec(),
                caption: format!("x_r ({name})\nlabel {}", class(ctx, d.labels[i])),
            });
            cells.push(GridCell {
                pixels: ctx.train.image(target).to_vec(),
                caption: format!("x target\n{}", class(ctx, ctx.train.labels[target])),
            });
            GridRow {
                label: format!("#{target}"),
                cells,
            }
        })
        .collect();
    let rel = grid_path(name);
    image_grid(ctx.path(&rel), &rows, d.shape, scale(d.shape))?;
    Ok(Some(rel))
}

/// Rows of (x, x_adv) with true label y and new label t for D_rand / D_det.
pub fn relabel_grid(ctx: &Ctx, name: &str, ds: &ConstructedDataset) -> Result<Option<String>> {
    let d = &ds.dataset;
    let rows: Vec<GridRow> = (0..d.len().min(ROWS))
        .map(|i| {
            let src = ds.source_indices[i] as usize;
            GridRow {
                label: format!("#{src}"),
                cells: vec![
                    GridCell {
                        pixels: ctx.train.image(src).to_vec(),
                        caption: format!("x\ntrue {}", class(ctx, ctx.train.labels[src])),
                    },
                    GridCell {
                        pixels: d.image(i).to_vec(),
                        caption: format!("x_adv\nlabel t = {}", class(ctx, d.labels[i])),
                    },
                ],
            }
        })
        .collect();
    let rel = grid_path(name);
    image_grid(ctx.path(&rel), &rows, d.shape, scale(d.shape))?;
    Ok(Some(rel))
}

//! The training curve: `runs/<name>/curve.png`, drawn from the metrics log after every
//! validation. Three panels over the step: the training loss (log scale, raw and smoothed),
//! validation SI-SDR and segmental SNR in dB, and validation PESQ. Drawn with a built-in
//! bitmap font, so it needs no system fonts or plotting library.

use std::path::Path;

use anyhow::{Context, Result};

const WIDTH: usize = 900;
const PANEL: usize = 240;
const LEFT: usize = 76;
const RIGHT: usize = 20;
const TOP: usize = 24;
const BOTTOM: usize = 30;

type Rgb = [u8; 3];
/// A series to draw: its points, colour and line thickness.
type Series<'a> = (&'a [(f64, f64)], Rgb, i64);
const BACKGROUND: Rgb = [255, 255, 255];
const AXIS: Rgb = [60, 60, 60];
const GRID: Rgb = [225, 225, 225];
const LOSS_RAW: Rgb = [170, 200, 235];
const LOSS: Rgb = [20, 70, 160];
const SI_SDR: Rgb = [200, 40, 40];
const SSNR: Rgb = [30, 140, 60];
const PESQ: Rgb = [120, 50, 160];

/// The log's series: (step, value) points.
#[derive(Default, Debug)]
pub struct Curves {
    pub loss: Vec<(f64, f64)>,
    pub si_sdr: Vec<(f64, f64)>,
    pub ssnr: Vec<(f64, f64)>,
    pub pesq: Vec<(f64, f64)>,
}

/// Reads a run's metrics log (JSON lines); lines it cannot parse are skipped.
pub fn read_log(path: &Path) -> Result<Curves> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut c = Curves::default();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let Some(step) = v.get("step").and_then(|s| s.as_f64()) else {
            continue;
        };
        for (key, series) in [
            ("loss", &mut c.loss),
            ("valid_si_sdr", &mut c.si_sdr),
            ("valid_ssnr", &mut c.ssnr),
            ("valid_pesq", &mut c.pesq),
        ] {
            if let Some(x) = v
                .get(key)
                .and_then(|x| x.as_f64())
                .filter(|x| x.is_finite())
            {
                series.push((step, x));
            }
        }
    }
    Ok(c)
}

/// An RGB canvas.
pub struct Canvas {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

impl Canvas {
    fn new(width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            pixels: BACKGROUND.repeat(width * height),
        }
    }

    pub fn get(&self, x: usize, y: usize) -> Rgb {
        let i = 3 * (y * self.width + x);
        [self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]]
    }

    fn put(&mut self, x: i64, y: i64, c: Rgb) {
        if x >= 0 && y >= 0 && (x as usize) < self.width && (y as usize) < self.height {
            let i = 3 * (y as usize * self.width + x as usize);
            self.pixels[i..i + 3].copy_from_slice(&c);
        }
    }

    fn line(&mut self, (x0, y0): (f64, f64), (x1, y1): (f64, f64), c: Rgb, thick: i64) {
        let n = (x1 - x0).abs().max((y1 - y0).abs()).ceil().max(1.0) as usize;
        for i in 0..=n {
            let t = i as f64 / n as f64;
            let (x, y) = (x0 + t * (x1 - x0), y0 + t * (y1 - y0));
            for dx in 0..thick {
                for dy in 0..thick {
                    self.put(x.round() as i64 + dx, y.round() as i64 + dy, c);
                }
            }
        }
    }

    /// Text in the 5 x 7 font at (x, y), top left; characters it lacks are blank.
    fn text(&mut self, x: i64, y: i64, s: &str, c: Rgb) {
        for (k, ch) in s.chars().enumerate() {
            let rows = glyph(ch.to_ascii_uppercase());
            for (r, bits) in rows.iter().enumerate() {
                for col in 0..5 {
                    if bits & (0b10000 >> col) != 0 {
                        self.put(x + 6 * k as i64 + col, y + r as i64, c);
                    }
                }
            }
        }
    }

    /// PNG bytes.
    pub fn png(&self) -> Result<Vec<u8>> {
        let mut out = vec![];
        let mut enc = png::Encoder::new(&mut out, self.width as u32, self.height as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header()?;
        w.write_image_data(&self.pixels)?;
        w.finish()?;
        Ok(out)
    }
}

/// A panel's frame in pixels and the data range it maps.
struct Panel {
    top: f64,
    x_range: (f64, f64),
    y_range: (f64, f64),
}

impl Panel {
    fn at(&self, x: f64, y: f64) -> (f64, f64) {
        let (w, h) = ((WIDTH - LEFT - RIGHT) as f64, (PANEL - TOP - BOTTOM) as f64);
        let fx = (x - self.x_range.0) / (self.x_range.1 - self.x_range.0).max(1e-12);
        let fy = (y - self.y_range.0) / (self.y_range.1 - self.y_range.0).max(1e-12);
        (
            LEFT as f64 + fx * w,
            self.top + TOP as f64 + (1.0 - fy.clamp(0.0, 1.0)) * h,
        )
    }
}

fn range(series: &[&[(f64, f64)]]) -> (f64, f64) {
    let ys = series.iter().flat_map(|s| s.iter().map(|p| p.1));
    let (lo, hi) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| {
        (a.min(y), b.max(y))
    });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-3);
    (lo - pad, hi + pad)
}

/// A tick label; `step` (the distance between linear ticks) sets enough decimals that
/// neighbouring ticks never read the same.
fn label(v: f64, step: Option<f64>) -> String {
    if let Some(step) = step.filter(|s| *s > 0.0 && *s < 1.0) {
        if v.abs() < 1e5 {
            let decimals = (-step.log10()).ceil().clamp(0.0, 6.0) as usize;
            return format!("{v:.decimals$}");
        }
    }
    if v != 0.0 && (v.abs() < 0.01 || v.abs() >= 1e5) {
        format!("{v:.1e}")
    } else if v.abs() < 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.0}")
    }
}

/// Draws one panel: grid, axes, tick labels, title, then each series.
fn panel(
    canvas: &mut Canvas,
    index: usize,
    title: &[(&str, Rgb)],
    series: &[Series],
    x_range: (f64, f64),
    log_y: bool,
) {
    let shown: Vec<Vec<(f64, f64)>> = series
        .iter()
        .map(|(s, _, _)| {
            s.iter()
                .map(|&(x, y)| (x, if log_y { y.max(1e-12).log10() } else { y }))
                .collect()
        })
        .collect();
    let refs: Vec<&[(f64, f64)]> = shown.iter().map(|v| v.as_slice()).collect();
    let p = Panel {
        top: (index * PANEL) as f64,
        x_range,
        y_range: range(&refs),
    };
    for i in 0..=4 {
        let f = i as f64 / 4.0;
        let y = p.y_range.0 + f * (p.y_range.1 - p.y_range.0);
        let (_, py) = p.at(x_range.0, y);
        canvas.line((LEFT as f64, py), ((WIDTH - RIGHT) as f64, py), GRID, 1);
        let text = match log_y {
            true => label(10f64.powf(y), None),
            false => label(y, Some((p.y_range.1 - p.y_range.0) / 4.0)),
        };
        canvas.text(
            LEFT as i64 - 6 - 6 * text.len() as i64,
            py as i64 - 3,
            &text,
            AXIS,
        );
        let x = x_range.0 + f * (x_range.1 - x_range.0);
        let (px, bottom) = p.at(x, p.y_range.0);
        canvas.line((px, bottom), (px, bottom + 4.0), AXIS, 1);
        let text = format!("{x:.0}");
        canvas.text(
            px as i64 - 3 * text.len() as i64,
            bottom as i64 + 8,
            &text,
            AXIS,
        );
    }
    let (x0, y0) = p.at(x_range.0, p.y_range.0);
    let (x1, y1) = p.at(x_range.1, p.y_range.1);
    canvas.line((x0, y0), (x1, y0), AXIS, 1);
    canvas.line((x0, y0), (x0, y1), AXIS, 1);
    let mut x = LEFT as i64;
    for (words, color) in title {
        canvas.text(x, p.top as i64 + 8, words, *color);
        x += 6 * (words.len() as i64 + 2);
    }
    for (points, (_, color, thick)) in shown.iter().zip(series) {
        for w in points.windows(2) {
            canvas.line(p.at(w[0].0, w[0].1), p.at(w[1].0, w[1].1), *color, *thick);
        }
        if let [only] = points.as_slice() {
            canvas.line(p.at(only.0, only.1), p.at(only.0, only.1), *color, 3);
        }
    }
}

/// Exponential moving average, reaching back about `span` points.
fn smooth(s: &[(f64, f64)], span: f64) -> Vec<(f64, f64)> {
    let a = 1.0 / span.max(1.0);
    let mut acc = None;
    s.iter()
        .map(|&(x, y)| {
            let v = match acc {
                None => y,
                Some(m) => m + a * (y - m),
            };
            acc = Some(v);
            (x, v)
        })
        .collect()
}

/// Draws the three panels.
pub fn draw(c: &Curves) -> Canvas {
    let mut canvas = Canvas::new(WIDTH, 3 * PANEL);
    let last = [&c.loss, &c.si_sdr, &c.pesq]
        .iter()
        .filter_map(|s| s.last().map(|p| p.0))
        .fold(1.0f64, f64::max);
    let x_range = (0.0, last);
    let smoothed = smooth(&c.loss, c.loss.len() as f64 / 50.0);
    panel(
        &mut canvas,
        0,
        &[("training loss", LOSS)],
        &[(&c.loss, LOSS_RAW, 1), (&smoothed, LOSS, 2)],
        x_range,
        true,
    );
    panel(
        &mut canvas,
        1,
        &[("validation SI-SDR dB", SI_SDR), ("SSNR dB", SSNR)],
        &[(&c.si_sdr, SI_SDR, 2), (&c.ssnr, SSNR, 2)],
        x_range,
        false,
    );
    panel(
        &mut canvas,
        2,
        &[("validation PESQ", PESQ), ("over step", AXIS)],
        &[(&c.pesq, PESQ, 2)],
        x_range,
        false,
    );
    canvas
}

/// Redraws `run_dir/curve.png` from `run_dir/metrics.jsonl`.
pub fn render(run_dir: &Path) -> Result<()> {
    let curves = read_log(&run_dir.join("metrics.jsonl"))?;
    let png = draw(&curves).png()?;
    let path = run_dir.join("curve.png");
    wavecrn_engine::io::write_atomically(&path, &png)
        .with_context(|| format!("cannot write {} (is the disk full?)", path.display()))
}

/// Rows of a 5 x 7 glyph, high bit on the left.
fn glyph(c: char) -> [u8; 7] {
    match c {
        '0' => [14, 17, 19, 21, 25, 17, 14],
        '1' => [4, 12, 4, 4, 4, 4, 14],
        '2' => [14, 17, 1, 2, 4, 8, 31],
        '3' => [31, 2, 4, 2, 1, 17, 14],
        '4' => [2, 6, 10, 18, 31, 2, 2],
        '5' => [31, 16, 30, 1, 1, 17, 14],
        '6' => [6, 8, 16, 30, 17, 17, 14],
        '7' => [31, 1, 2, 4, 8, 8, 8],
        '8' => [14, 17, 17, 14, 17, 17, 14],
        '9' => [14, 17, 17, 15, 1, 2, 12],
        '.' => [0, 0, 0, 0, 0, 12, 12],
        '-' => [0, 0, 0, 31, 0, 0, 0],
        '+' => [0, 4, 4, 31, 4, 4, 0],
        'A' => [14, 17, 17, 31, 17, 17, 17],
        'B' => [30, 17, 17, 30, 17, 17, 30],
        'D' => [28, 18, 17, 17, 17, 18, 28],
        'E' => [31, 16, 16, 30, 16, 16, 31],
        'G' => [14, 17, 16, 23, 17, 17, 15],
        'I' => [14, 4, 4, 4, 4, 4, 14],
        'L' => [16, 16, 16, 16, 16, 16, 31],
        'N' => [17, 17, 25, 21, 19, 17, 17],
        'O' => [14, 17, 17, 17, 17, 17, 14],
        'P' => [30, 17, 17, 30, 16, 16, 16],
        'Q' => [14, 17, 17, 17, 21, 18, 13],
        'R' => [30, 17, 17, 30, 20, 18, 17],
        'S' => [15, 16, 16, 14, 1, 1, 30],
        'T' => [31, 4, 4, 4, 4, 4, 4],
        'V' => [17, 17, 17, 17, 17, 10, 4],
        _ => [0; 7],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has(
        canvas: &Canvas,
        color: Rgb,
        xs: std::ops::Range<usize>,
        ys: std::ops::Range<usize>,
    ) -> bool {
        ys.clone()
            .any(|y| xs.clone().any(|x| canvas.get(x, y) == color))
    }

    #[test]
    fn neighbouring_tick_labels_differ_on_a_narrow_range() {
        let (lo, hi) = (1.7325, 1.7625);
        let step = (hi - lo) / 4.0;
        let labels: Vec<String> = (0..=4)
            .map(|i| label(lo + i as f64 * step, Some(step)))
            .collect();
        for pair in labels.windows(2) {
            assert_ne!(pair[0], pair[1], "{labels:?}");
        }
        assert_eq!(label(10.0, Some(2.5)), "10");
        assert_eq!(label(0.001, None), "1.0e-3");
    }

    /// A falling loss is drawn high on the left and low on the right of the top panel, a rising
    /// SI-SDR low on the left and high on the right of the middle one.
    #[test]
    fn the_curves_go_where_the_numbers_do() {
        let c = Curves {
            loss: (1..=1000).map(|s| (s as f64, 1.0 / s as f64)).collect(),
            si_sdr: (1..=10).map(|i| (100.0 * i as f64, i as f64)).collect(),
            ssnr: (1..=10).map(|i| (100.0 * i as f64, 2.0)).collect(),
            pesq: (1..=10)
                .map(|i| (100.0 * i as f64, 1.0 + 0.1 * i as f64))
                .collect(),
        };
        let canvas = draw(&c);
        let (mid_x, mid_y) = (
            LEFT + (WIDTH - LEFT - RIGHT) / 2,
            TOP + (PANEL - TOP - BOTTOM) / 2,
        );
        assert!(has(&canvas, LOSS, LEFT..LEFT + 40, TOP..mid_y));
        assert!(!has(&canvas, LOSS, WIDTH - 80..WIDTH - RIGHT, TOP..mid_y));
        assert!(has(
            &canvas,
            LOSS,
            WIDTH - 80..WIDTH - RIGHT,
            mid_y..PANEL - BOTTOM
        ));
        let (top, bottom) = (PANEL + TOP + 12, 2 * PANEL - BOTTOM);
        assert!(has(
            &canvas,
            SI_SDR,
            WIDTH - 120..WIDTH - RIGHT,
            top..PANEL + mid_y
        ));
        assert!(!has(
            &canvas,
            SI_SDR,
            mid_x..WIDTH - RIGHT,
            PANEL + mid_y + 20..bottom
        ));
        assert!(has(
            &canvas,
            PESQ,
            WIDTH - 120..WIDTH - RIGHT,
            2 * PANEL + TOP + 12..2 * PANEL + mid_y
        ));
        // And it is a PNG of that size.
        let png = canvas.png().unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(png));
        let reader = decoder.read_info().unwrap();
        assert_eq!(reader.info().width as usize, WIDTH);
        assert_eq!(reader.info().height as usize, 3 * PANEL);
    }
}

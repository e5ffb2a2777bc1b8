//! The fused recurrence's backward against LibTorch autograd of the plain per-step
//! formulation, on small random cases (both directions, both skip kinds, odd sizes).

use rand::{Rng, SeedableRng};
use tch::{Kind, Tensor};
use wavecrn_train::recurrence::{backward, forward, Params, Shape};

fn random(n: usize, scale: f32, rng: &mut rand::rngs::StdRng) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-scale..scale)).collect()
}

fn t(v: &[f32], dims: &[i64]) -> Tensor {
    Tensor::from_slice(v)
        .view(dims)
        .to_kind(Kind::Double)
        .set_requires_grad(true)
}

/// The recurrence one step at a time with LibTorch ops, in double precision.
fn per_step(s: Shape, u: &Tensor, skip: Option<&Tensor>, wc: &Tensor, bias: &Tensor) -> Tensor {
    let (n, d, k) = (s.hidden as i64, s.directions as i64, s.k as i64);
    let u = u.view([s.steps as i64, s.batch as i64, d, k, n]);
    let wc = wc.view([2, d, n]);
    let bias = bias.view([2, d, n]);
    let mut per_dir = vec![];
    for dir in 0..d {
        let mut c = Tensor::zeros([s.batch as i64, n], (Kind::Double, tch::Device::Cpu));
        let mut hs: Vec<Option<Tensor>> = (0..s.steps).map(|_| None).collect();
        for i in 0..s.steps {
            let ti = if dir == 1 { s.steps - 1 - i } else { i };
            let ut = u.get(ti as i64).select(1, dir);
            let (u0, u1, u2) = (ut.select(1, 0), ut.select(1, 1), ut.select(1, 2));
            let sk = match skip {
                Some(x) => x.get(ti as i64).view([s.batch as i64, d, n]).select(1, dir),
                None => ut.select(1, 3),
            };
            let f = (&u1 + bias.get(0).get(dir) + wc.get(0).get(dir) * &c).sigmoid();
            let r = (&u2 + bias.get(1).get(dir) + wc.get(1).get(dir) * &c).sigmoid();
            c = &u0 + (&c - &u0) * f;
            hs[ti] = Some(&sk + (&c - &sk) * r);
        }
        per_dir.push(Tensor::stack(
            &hs.into_iter().map(Option::unwrap).collect::<Vec<_>>(),
            0,
        ));
    }
    Tensor::cat(&per_dir, 2)
}

#[test]
fn fused_backward_equals_autograd() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    for (steps, batch, hidden, directions, k) in [
        (5, 1, 3, 1, 3),
        (7, 2, 5, 2, 3),
        (6, 3, 4, 2, 4),
        (9, 1, 7, 1, 4),
    ] {
        let s = Shape {
            steps,
            batch,
            hidden,
            directions,
            k,
        };
        let u = random(s.u_len(), 2.0, &mut rng);
        let skip = (k == 3).then(|| random(s.h_len(), 1.0, &mut rng));
        let wc = random(2 * directions * hidden, 1.0, &mut rng);
        let bias = random(2 * directions * hidden, 0.5, &mut rng);
        let dh = random(s.h_len(), 1.0, &mut rng);
        let p = Params {
            weight_c: &wc,
            bias: &bias,
        };

        let (mut h, mut c) = (vec![0.0; s.h_len()], vec![0.0; s.h_len()]);
        forward(s, p, &u, skip.as_deref(), &mut h, &mut c);
        let g = backward(s, p, &u, skip.as_deref(), &c, &dh);

        let (tu, twc, tb) = (t(&u, &[-1]), t(&wc, &[-1]), t(&bias, &[-1]));
        let tskip = skip.as_ref().map(|x| {
            t(
                x,
                &[steps as i64, batch as i64, (directions * hidden) as i64],
            )
        });
        let th = per_step(s, &tu, tskip.as_ref(), &twc, &tb);
        let hv = Vec::<f64>::try_from(&th.detach().contiguous().view([-1])).unwrap();
        assert!(
            hv.iter().zip(&h).all(|(a, b)| (a - *b as f64).abs() < 1e-5),
            "forward differs"
        );
        (th * Tensor::from_slice(&dh)
            .view([steps as i64, batch as i64, -1])
            .to_kind(Kind::Double))
        .sum(Kind::Double)
        .backward();

        let close = |name: &str, got: &[f32], want: &Tensor| {
            let want = Vec::<f64>::try_from(&want.contiguous().view([-1])).unwrap();
            let scale = want.iter().fold(1e-9f64, |m, v| m.max(v.abs()));
            let err = got
                .iter()
                .zip(&want)
                .fold(0f64, |m, (a, b)| m.max((*a as f64 - b).abs()))
                / scale;
            assert!(
                err < 1e-5,
                "{name} ({steps}x{batch}x{hidden}, {directions} dir, k {k}): relative error {err}"
            );
        };
        close("dU", &g.u, &tu.grad());
        close("dweight_c", &g.weight_c, &twc.grad());
        close("dbias", &g.bias, &tb.grad());
        if let (Some(gs), Some(ts)) = (&g.skip, &tskip) {
            close("dskip", gs, &ts.grad());
        }
    }
}

//! Stateless preprocessors of images and shapes: `resize`, `grayscale` and `flatten`.

use gymnos_plugin_sdk::{
    fit_whole, memory, numel,
    tch::{Kind, Tensor},
    Config, Configurable, Context, IncrementalPreprocessor, Preprocessor, Result,
};

use crate::{bad_shape, named_state};

/// `Preprocessor` and `IncrementalPreprocessor` of a preprocessor without state, from its
/// `check` (whether it can work on features of that shape) and `apply` (the transform): fitting
/// only checks the training batches' shape, so that a mismatch is reported before training.
macro_rules! stateless {
    ($ty:ty) => {
        impl Preprocessor for $ty {
            fn fit(&mut self, features: &Tensor, targets: &Tensor) -> Result<()> {
                fit_whole(self, features, targets)
            }

            fn transform(&self, features: &Tensor) -> Result<Tensor> {
                self.check(features)?;
                Ok(self.apply(features))
            }

            fn state(&self) -> Result<Vec<(String, Tensor)>> {
                Ok(Vec::new())
            }

            fn load_state(&mut self, state: Vec<(String, Tensor)>) -> Result<()> {
                let [] = named_state(<$ty as Configurable>::NAME, [], state)?;
                Ok(())
            }
        }

        impl IncrementalPreprocessor for $ty {
            fn begin_fit(&mut self) -> Result<()> {
                Ok(())
            }

            fn fit_batch(&mut self, features: &Tensor, _targets: &Tensor) -> Result<()> {
                self.check(features)
            }

            fn end_fit(&mut self) -> Result<()> {
                Ok(())
            }
        }
    };
}

/// The configuration of `resize`.
#[derive(Config)]
pub struct ResizeConfig {
    /// Height of the resized images, in pixels
    #[config(range = 1..=65535)]
    pub height: i64,
    /// Width of the resized images, in pixels
    #[config(range = 1..=65535)]
    pub width: i64,
}

/// Resizes images `[n, c, h, w]` (or `[n, h, w]`) to `height` × `width`: bilinear interpolation
/// (half-pixel centers, `align_corners = false`); when either side shrinks, antialiased with
/// libtorch's `_upsample_bilinear2d_aa` (tch's `Tensor::internal_upsample_bilinear2d_aa`, the
/// kernel of PyTorch's `interpolate(..., antialias=True)`), so that shrinking averages over the
/// pixels it drops instead of aliasing; growing on both sides is plain bilinear. Returns `float32` values on the input's scale. Stateless.
pub struct Resize {
    height: i64,
    width: i64,
}

impl Configurable for Resize {
    const NAME: &'static str = "resize";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Resizes images to height x width (bilinear, antialiased when shrinking)";
    type Config = ResizeConfig;

    fn build(config: ResizeConfig, _ctx: &Context) -> Result<Self> {
        let (height, width) = (config.height, config.width);
        // One channel of one image, float32: refused before any batch comes when even that
        // cannot fit; every batch is checked again with its images and channels.
        memory::ensure_fits(&format!("height x width ({height}x{width} pixels)"), &[height as u64, width as u64], 4)?;
        Ok(Self { height, width })
    }
}

impl Resize {
    fn check(&self, x: &Tensor) -> Result<()> {
        let shape = x.size();
        if !(matches!(shape.len(), 3 | 4) && shape[1..].iter().all(|&d| d > 0)) {
            return Err(bad_shape(Self::NAME, "images [n, c, h, w] or [n, h, w]", &shape));
        }
        // What the resized batch takes, float32, before libtorch is asked for it.
        let (n, c) = (shape[0], if shape.len() == 4 { shape[1] } else { 1 });
        let (height, width) = (self.height, self.width);
        let what = format!("height x width ({height}x{width} pixels, for {n} images of {c} channels)");
        memory::ensure_fits(&what, &[n as u64, c as u64, height as u64, width as u64], 4)
    }

    fn apply(&self, x: &Tensor) -> Tensor {
        let images = if x.dim() == 3 { x.unsqueeze(1) } else { x.shallow_clone() }.to_kind(Kind::Float);
        let [n, c, h, w] = images.size()[..] else { unreachable!("checked: 4 dimensions") };
        let size = [self.height, self.width];
        let resized = if n == 0 {
            Tensor::zeros([0, c, self.height, self.width], (Kind::Float, x.device()))
        } else if (h, w) == (self.height, self.width) {
            images
        } else if self.height < h || self.width < w {
            images.internal_upsample_bilinear2d_aa(size, false, None, None)
        } else {
            images.upsample_bilinear2d(size, false, None, None)
        };
        if x.dim() == 3 {
            resized.squeeze_dim(1)
        } else {
            resized
        }
    }
}

stateless!(Resize);

/// The configuration of `grayscale` (no keys).
#[derive(Config)]
pub struct GrayscaleConfig {}

/// Turns RGB images `[n, 3, h, w]` into luma `[n, 1, h, w]` with the ITU-R BT.601 weights
/// `0.299 R + 0.587 G + 0.114 B`; one-channel images `[n, 1, h, w]` pass through. Returns
/// `float32` values on the input's scale. Stateless.
pub struct Grayscale;

/// ITU-R BT.601 luma weights of R, G and B.
pub const LUMA_WEIGHTS: [f32; 3] = [0.299, 0.587, 0.114];

impl Configurable for Grayscale {
    const NAME: &'static str = "grayscale";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Turns RGB images [n, 3, h, w] into one luma channel (ITU-R 601 weights)";
    type Config = GrayscaleConfig;

    fn build(_config: GrayscaleConfig, _ctx: &Context) -> Result<Self> {
        Ok(Self)
    }
}

impl Grayscale {
    fn check(&self, x: &Tensor) -> Result<()> {
        let shape = x.size();
        if shape.len() == 4 && matches!(shape[1], 1 | 3) {
            Ok(())
        } else {
            Err(bad_shape(Self::NAME, "images [n, 3, h, w] or [n, 1, h, w]", &shape))
        }
    }

    fn apply(&self, x: &Tensor) -> Tensor {
        let x = x.to_kind(Kind::Float);
        if x.size()[1] == 1 {
            return x;
        }
        let weights = Tensor::from_slice(&LUMA_WEIGHTS).view([1, 3, 1, 1]);
        (x * weights).sum_dim_intlist(1, true, Kind::Float)
    }
}

stateless!(Grayscale);

/// The configuration of `flatten` (no keys).
#[derive(Config)]
pub struct FlattenConfig {}

/// Reshapes features `[n, ...]` into `[n, prod(...)]` (row-major), keeping their dtype.
/// Stateless.
pub struct Flatten;

impl Configurable for Flatten {
    const NAME: &'static str = "flatten";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Flattens features [n, ...] into [n, prod(...)]";
    type Config = FlattenConfig;

    fn build(_config: FlattenConfig, _ctx: &Context) -> Result<Self> {
        Ok(Self)
    }
}

impl Flatten {
    fn check(&self, x: &Tensor) -> Result<()> {
        if x.dim() >= 1 {
            numel(&x.size()[1..]).map(|_| ())
        } else {
            Err(bad_shape(Self::NAME, "features [n, ...]", &x.size()))
        }
    }

    fn apply(&self, x: &Tensor) -> Tensor {
        let shape = x.size();
        let width: i64 = shape[1..].iter().product();
        x.reshape([shape[0], width])
    }
}

stateless!(Flatten);

#[cfg(test)]
mod tests {
    use gymnos_plugin_sdk::{
        harness,
        serde_json::json,
        tch::{Device, Kind, Tensor},
        Preprocessor, Rng,
    };

    use super::{Flatten, Grayscale, Resize};
    use crate::testing::{assert_close, targets, values};

    #[test]
    fn meet_the_incremental_contract() {
        let images = Rng::new(1).uniform_tensor(&[13, 3, 12, 10], 0.0, 1.0);
        let y = targets(13);
        for (height, width) in [(6, 5), (24, 20), (6, 20), (12, 10)] {
            let config = json!({ "height": height, "width": width });
            harness::check_incremental_preprocessor::<Resize>(config, &images, &y, 4).unwrap();
        }
        let plain = images.narrow(1, 0, 1).squeeze_dim(1);
        harness::check_incremental_preprocessor::<Resize>(json!({ "height": 5, "width": 7 }), &plain, &y, 4).unwrap();
        harness::check_incremental_preprocessor::<Grayscale>(json!({}), &images, &y, 4).unwrap();
        harness::check_incremental_preprocessor::<Grayscale>(json!({}), &images.narrow(1, 0, 1), &y, 4).unwrap();
        harness::check_incremental_preprocessor::<Flatten>(json!({}), &images, &y, 4).unwrap();
    }

    #[test]
    fn resize_gives_the_configured_shape_and_keeps_a_constant_image() {
        let resize = |height: i64, width: i64| {
            Resize::build(
                gymnos_plugin_sdk::ConfigSchema::from_json(json!({ "height": height, "width": width })).unwrap(),
                &gymnos_plugin_sdk::Context::standalone(),
            )
            .unwrap()
        };
        use gymnos_plugin_sdk::Configurable;
        let constant = Tensor::full([2, 3, 9, 7], 0.25, (Kind::Float, Device::Cpu));
        for (height, width) in [(4, 3), (18, 14), (4, 14), (9, 7)] {
            let out = resize(height, width).transform(&constant).unwrap();
            assert_eq!(out.size(), [2, 3, height, width]);
            assert_eq!(out.kind(), Kind::Float);
            assert!(out.allclose(&constant.narrow(2, 0, 1).narrow(3, 0, 1), 1e-6, 1e-6, false));
        }
        let out = resize(3, 5).transform(&Tensor::ones([4, 8, 8], (Kind::Uint8, Device::Cpu))).unwrap();
        assert_eq!(out.size(), [4, 3, 5]);
        assert_close(&values(&out), &[1.0; 60], 1e-6);
        let none = resize(3, 5).transform(&Tensor::zeros([0, 2, 8, 8], (Kind::Float, Device::Cpu))).unwrap();
        assert_eq!(none.size(), [0, 2, 3, 5]);
        // Shrinking 4x4 to 1x1 antialiased weighs every pixel (a triangle filter 4 pixels wide:
        // weights 0.625, 0.875, 0.875, 0.625 per axis); plain bilinear would read only the
        // four central pixels and give 0.
        let corner = Tensor::zeros([1, 1, 4, 4], (Kind::Float, Device::Cpu));
        let _ = corner.narrow(2, 0, 1).narrow(3, 0, 1).fill_(1.0);
        assert_close(&values(&resize(1, 1).transform(&corner).unwrap()), &[(0.625f64 / 3.0).powi(2)], 1e-6);
        // Doubling a row [0, 1] interpolates with half-pixel centers.
        let row = Tensor::from_slice(&[0.0f32, 1.0]).view([1, 1, 2]);
        assert_close(&values(&resize(1, 4).transform(&row).unwrap()), &[0.0, 0.25, 0.75, 1.0], 1e-6);

        let err = resize(2, 2).transform(&Tensor::zeros([4, 8], (Kind::Float, Device::Cpu))).unwrap_err();
        assert_eq!(err.to_string(), "data error: resize needs images [n, c, h, w] or [n, h, w], got shape [4, 8]");
        let err = harness::check_preprocessor::<Resize>(json!({ "height": 0, "width": 2 }), &constant, &targets(2))
            .unwrap_err();
        assert_eq!(err, "create: configuration error: height: 0 is not in [1, 65535]");
    }

    #[test]
    fn resize_refuses_sizes_that_cannot_fit_before_allocating() {
        let machine = gymnos_plugin_sdk::memory::human(u128::from(gymnos_plugin_sdk::memory::limit_bytes()));
        let images = Tensor::zeros([8, 3, 4, 4], (Kind::Float, Device::Cpu));
        let err =
            harness::check_preprocessor::<Resize>(json!({ "height": 1000000, "width": 1000000 }), &images, &targets(8))
                .unwrap_err();
        assert_eq!(
            err,
            "create: configuration error: height: 1000000 is not in [1, 65535]; width: 1000000 is not in [1, 65535]"
        );
        // Within the rules, one image may still not fit: refused naming both sides.
        let resize = |side: i64| {
            <Resize as gymnos_plugin_sdk::Configurable>::build(
                gymnos_plugin_sdk::ConfigSchema::from_json(json!({ "height": side, "width": side })).unwrap(),
                &gymnos_plugin_sdk::Context::standalone(),
            )
        };
        let limit = gymnos_plugin_sdk::memory::limit_bytes();
        if limit < 65535 * 65535 * 4 {
            let err = resize(65535).err().unwrap().to_string();
            assert_eq!(
                err,
                format!(
                    "configuration error: height x width (65535x65535 pixels): needs 17.2 GB (17179344900 bytes), and \
                     this machine has {machine} of memory"
                )
            );
        }
        // One channel of one image fits; the batch's images and channels do not.
        let n = (limit / (3 * 4096 * 4096 * 4) + 1) as i64;
        let images = Tensor::zeros([n, 3, 4, 4], (Kind::Float, Device::Cpu));
        let config = json!({ "height": 4096, "width": 4096 });
        let err = harness::check_preprocessor::<Resize>(config, &images, &targets(n)).unwrap_err();
        assert!(
            err.starts_with(&format!(
                "fit: configuration error: height x width (4096x4096 pixels, for {n} images of 3 channels): needs "
            )),
            "{err}"
        );
    }

    #[test]
    fn grayscale_weighs_red_green_and_blue() {
        // One 1x2 image: a pure-colour pixel and a mixed one.
        let pixels = Tensor::from_slice(&[1.0f32, 0.2, 0.0, 0.4, 0.0, 0.6]).view([1, 3, 1, 2]);
        let out = Grayscale.transform(&pixels).unwrap();
        assert_eq!(out.size(), [1, 1, 1, 2]);
        assert_close(&values(&out), &[0.299, 0.299 * 0.2 + 0.587 * 0.4 + 0.114 * 0.6], 1e-6);
        let gray = Tensor::from_slice(&[3u8, 200]).view([1, 1, 1, 2]);
        assert_close(&values(&Grayscale.transform(&gray).unwrap()), &[3.0, 200.0], 0.0);
        let err = Grayscale.transform(&Tensor::zeros([2, 4, 3, 3], (Kind::Float, Device::Cpu))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "data error: grayscale needs images [n, 3, h, w] or [n, 1, h, w], got shape [2, 4, 3, 3]"
        );
        let err = harness::check_preprocessor::<Grayscale>(
            json!({}),
            &Tensor::zeros([2, 3, 4], (Kind::Float, Device::Cpu)),
            &targets(2),
        )
        .unwrap_err();
        assert_eq!(err, "fit: data error: grayscale needs images [n, 3, h, w] or [n, 1, h, w], got shape [2, 3, 4]");
    }

    #[test]
    fn flatten_keeps_the_samples_and_their_order() {
        let x = Tensor::arange(24, (Kind::Int64, Device::Cpu)).view([2, 3, 2, 2]);
        let out = Flatten.transform(&x).unwrap();
        assert_eq!(out.size(), [2, 12]);
        assert_eq!(out.kind(), Kind::Int64);
        assert_close(&values(&out.get(1)), &(12..24).map(f64::from).collect::<Vec<_>>(), 0.0);
        assert_eq!(Flatten.transform(&Tensor::zeros([5], (Kind::Float, Device::Cpu))).unwrap().size(), [5, 1]);
        assert_eq!(Flatten.transform(&Tensor::zeros([0, 3, 4], (Kind::Float, Device::Cpu))).unwrap().size(), [0, 12]);
        let err = Flatten.transform(&Tensor::from(1.0f32)).unwrap_err();
        assert_eq!(err.to_string(), "data error: flatten needs features [n, ...], got shape []");
        let mut flatten = Flatten;
        let err = flatten.load_state(vec![("mean".into(), Tensor::from(1.0f32))]).unwrap_err();
        assert_eq!(err.to_string(), "data error: flatten: unknown state tensor `mean` (it has no state)");
    }
}

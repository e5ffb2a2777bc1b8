//! Where a model runs: the CPU (tract's own runtime, with the fused SRU kernel), or an NVIDIA
//! GPU through tract-cuda for offline batch work. tract-cuda moves the convolutions, matrix
//! products, layer norms and element-wise ops to the GPU; the SRU recurrence, an operator it
//! does not know, runs on the CPU between device copies. The CUDA libraries are loaded at run
//! time, so a build with the `cuda` feature runs everywhere and only `--device cuda` needs a
//! GPU.

use std::fmt;
use std::str::FromStr;

use crate::error::Result;
use crate::model::LoadOptions;

/// A device a model is loaded on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Device {
    #[default]
    Cpu,
    Cuda,
}

/// What a user asks for: `auto` takes the GPU when one is usable, else the CPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceChoice {
    #[default]
    Auto,
    Cpu,
    Cuda,
}

impl FromStr for DeviceChoice {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda),
            other => Err(format!("unknown device `{other}`: auto, cpu or cuda")),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
        })
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
        })
    }
}

/// Whether CUDA can run models here; the error says why not (no CUDA support in this build,
/// no driver, a missing CUDA library).
pub fn cuda_available() -> Result<()> {
    #[cfg(feature = "cuda")]
    {
        cuda::runtime().map(|_| ())
    }
    #[cfg(not(feature = "cuda"))]
    {
        Err(crate::error::Error::Device(
            "this build has no CUDA support (built without the engine's `cuda` feature)".into(),
        ))
    }
}

/// Whether `why` (from [`cuda_available`]) says there is no NVIDIA driver at all (or no CUDA
/// in this build): nothing a user of `auto` on such a machine needs to hear about.
fn nothing_to_report(why: &str) -> bool {
    why.contains("driver library not found") || why.contains("no CUDA support")
}

impl DeviceChoice {
    /// The device to use, and for `auto` on a machine whose NVIDIA driver is present but
    /// unusable, a one-line note saying that it fell back to the CPU and why (where there is no
    /// driver at all, `auto` is the CPU without a word). `cuda` without a GPU is an error.
    pub fn resolve(self) -> Result<(Device, Option<String>)> {
        match self {
            Self::Cpu => Ok((Device::Cpu, None)),
            Self::Cuda => cuda_available().map(|_| (Device::Cuda, None)),
            Self::Auto => match cuda_available() {
                Ok(()) => Ok((Device::Cuda, None)),
                Err(why) if nothing_to_report(&why.to_string()) => Ok((Device::Cpu, None)),
                Err(why) => Ok((
                    Device::Cpu,
                    Some(format!("no usable GPU, running on the CPU ({why})")),
                )),
            },
        }
    }

    /// [`Self::resolve`] as the options to load a model with, and the note, if any.
    pub fn load_options(self) -> Result<(LoadOptions, Option<String>)> {
        let (device, note) = self.resolve()?;
        let options = LoadOptions {
            device,
            ..LoadOptions::default()
        };
        Ok((options, note))
    }
}

#[cfg(feature = "cuda")]
pub(crate) mod cuda {
    use tract_onnx::prelude::*;
    use tract_onnx::tract_core::runtime::{runtime_for_name, Runnable, Runtime};

    use crate::error::{Error, Result};

    // Linking the crate registers its runtime; without a use the linker drops it.
    extern crate tract_cuda;

    /// tract-cuda's runtime, once its own check (driver and libraries) passes.
    pub fn runtime() -> Result<&'static dyn Runtime> {
        let rt = runtime_for_name("cuda")
            .map_err(|e| Error::Device(format!("{e:#}")))?
            .ok_or_else(|| Error::Device("tract-cuda's runtime is not registered".into()))?;
        rt.check()
            .map_err(|e| Error::Device(format!("CUDA is not usable here: {e:#}")))?;
        Ok(rt)
    }

    /// Prepares `model` to run on the GPU.
    pub fn prepare(model: TypedModel) -> TractResult<Box<dyn Runnable>> {
        let rt = runtime().map_err(|e| TractError::msg(e.to_string()))?;
        rt.prepare(model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A machine with no driver is quiet; one whose driver fails is told why.
    #[test]
    fn only_a_present_but_unusable_driver_is_reported() {
        assert!(nothing_to_report(
            "CUDA is not usable here: CUDA driver validation failed: CUDA driver library not \
             found. Tried: [\"libcuda.so.1\", \"libcuda.so\"]"
        ));
        assert!(nothing_to_report(
            "this build has no CUDA support (built without the engine's `cuda` feature)"
        ));
        assert!(!nothing_to_report(
            "CUDA is not usable here: CUDA_ERROR_NO_DEVICE: no CUDA-capable device is detected"
        ));
    }

    #[test]
    fn choices_parse_and_auto_always_resolves() {
        assert_eq!("cuda".parse::<DeviceChoice>(), Ok(DeviceChoice::Cuda));
        assert!("gpu"
            .parse::<DeviceChoice>()
            .unwrap_err()
            .contains("auto, cpu or cuda"));
        assert_eq!(DeviceChoice::Cpu.resolve().unwrap(), (Device::Cpu, None));
        let (device, note) = DeviceChoice::Auto.resolve().unwrap();
        match cuda_available() {
            Ok(()) => assert_eq!((device, note), (Device::Cuda, None)),
            Err(why) => {
                assert_eq!(device, Device::Cpu);
                let why = why.to_string();
                match note {
                    None => assert!(nothing_to_report(&why), "{why}"),
                    Some(note) => assert!(!nothing_to_report(&why) && note.contains(&why)),
                }
                let err = DeviceChoice::Cuda.resolve().unwrap_err().to_string();
                assert!(err.contains("GPU") || err.contains("CUDA"), "{err}");
            }
        }
    }
}

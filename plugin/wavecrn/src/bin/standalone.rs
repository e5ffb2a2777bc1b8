//! WaveCRN Denoise as a standalone app: live input (JACK where present, else the system's
//! audio through cpal) denoised to the output, with the plugin's parameters on the command
//! line (`--help`).

fn main() {
    nice_plug::prelude::nice_export_standalone::<wavecrn::Wavecrn>();
}

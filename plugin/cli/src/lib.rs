//! The `wavecrn` command line tool's library half: the file-to-file pipeline (read, denoise in
//! chunks, write; audio files through `wavecrn_audio`) and the process heap set-up.

pub mod pipeline;

"""Stage code of the hmm_icl study: corpus, HMM fitting, evaluation, sampling, Llama, ICL, report."""

"""Stage code of the mixture_sim study: a regression simulator of LM training outcomes from data mixtures."""

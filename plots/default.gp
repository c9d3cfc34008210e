# default.gp — the figures of the quick start's sweep (experiments/configs/default.ini):
# figures/default_error, default_time and default_spectrum (see plots/overview.gp), the spectrum of
# the OCR model's sharp head (layer 1, head 3) at n = 512.
# Run from the source directory:
#   gnuplot -e "results='<abs>/results'; figures='<abs>/figures'; fig='default'" plots/default.gp
sp_label = "ppocrv4-svtr-attn-n1024"
sp_layer = 1
sp_head = 3
sp_causal = 0
load 'plots/overview.gp'

"""The wireless substrate (DESIGN §5): channels, objectives, closed forms, baselines.

Batched PyTorch; complex64/float32 by default, float64 inside algorithms that need it.

==================  =============================================================
channels            :func:`uma_channels` (Sionna 3GPP 38.901 UMa NLOS), i.i.d. and
                    Kronecker-correlated Rayleigh, :func:`load_channels`
ris_channels        :func:`ris_channels`: the RIS geometry of paper 002 Sec. V
rates               :func:`sum_rate` (MU-MIMO log-det), MISO SINR rates, WSR
precoders           :func:`zf`, :func:`mmse` (RZF), :func:`cfp` (paper 000 eq. 6)
wmmse               :func:`wmmse` (Shi et al. 2011), best-of-R restarts, (A, U) of CFP,
                    :func:`cfp_refine` (WMMSE steps in the CFP form)
scheduling          :func:`greedy_schedule`, :func:`random_schedule`, :func:`swap_refine`
power_control       P-C: WMMSE power control; P-B: OFDMA minimum bandwidth (KKT)
ris, ris_bcd        :func:`ris_rate`, :func:`ris_bcd` (Guo, Liang, Chen, Larsson 2020),
                    :func:`ris_single_ue` (what serving one UE alone can reach)
ris_ascent          :func:`ris_ascent` (per-drop gradient ascent on the SE from a start),
                    :func:`tagged_mrt` (one beam per UE: the multi-UE start),
                    :func:`dual_precoder` / :func:`dual_ascent` (the sum-SE-optimal
                    beamforming structure, and ascent in its powers and the phases)
==================  =============================================================
"""
from .channels import correlated_rayleigh, load_channels, rayleigh_channels, uma_channels
from .power_control import ofdma_min_bandwidth, ofdma_rates, pc_rates, wmmse_power_control
from .precoders import cfp, mmse, normalize_power, zf
from .rates import miso_rates, sum_rate, user_rates, waterfilling_capacity
from .ris import (RISDigital, RISHybrid, RISTensors, hybrid_precoder, rf_assignment, ris_effective_channel,
                  ris_rate, unit_modulus)
from .ris_ascent import dual_ascent, dual_precoder, ris_ascent, tagged_mrt
from .ris_bcd import hybrid_from_digital, ris_bcd
from .ris_channels import RISChannels, ris_channels
from .ris_single_ue import RISSingleUE, ris_single_ue
from .scheduling import greedy_schedule, random_schedule, scheduled_sum_rate, swap_refine
from .wmmse import cfp_refine, wmmse, wmmse_auxiliary, wmmse_best_of

__all__ = ["uma_channels", "rayleigh_channels", "correlated_rayleigh", "load_channels", "ris_channels",
           "RISChannels", "sum_rate", "user_rates", "miso_rates", "waterfilling_capacity", "zf", "mmse",
           "cfp", "normalize_power", "wmmse", "wmmse_best_of", "wmmse_auxiliary", "cfp_refine", "greedy_schedule",
           "swap_refine", "random_schedule", "scheduled_sum_rate", "pc_rates", "wmmse_power_control", "ofdma_rates",
           "ofdma_min_bandwidth", "ris_rate", "ris_bcd", "ris_effective_channel", "hybrid_precoder",
           "hybrid_from_digital", "unit_modulus", "RISTensors", "RISHybrid", "RISDigital", "ris_single_ue",
           "RISSingleUE", "ris_ascent", "tagged_mrt", "dual_ascent", "dual_precoder", "rf_assignment"]

"""Registers mmcore-weak-boost's kinds; this module is the entry point."""
import mmcore
from mmcore_weak_boost.boost import WeakBoostConfig, build_weak_boost
from mmcore_weak_boost.leave_one_out import LeaveOneOutConfig, build_leave_one_out


@mmcore.hookimpl
def mmcore_register_components(registry: mmcore.ComponentRegistry) -> None:
    registry.valuator("leave_one_out", LeaveOneOutConfig, build_leave_one_out,
                      help="leave-one-out values v(all) - v(all but m): M + 1 head-only probes per step")
    registry.balancer("weak_boost", WeakBoostConfig, build_weak_boost, requires={"unimodal_logits"},
                      help="adds each under-contributing modality's own task loss, weighted by its shortfall")

"""Start-up checks of a node's cascade configuration (used by the CLI and the capability)."""
from __future__ import annotations

from config.settings import Settings
from config.site_plan import Node, SitePlan


def cascade_problems(settings: Settings, plan: SitePlan) -> list[str]:
    """Why this node cannot start its cascade role ([] when it can, or when nothing is cascaded)."""
    if not plan.nodes:
        return []
    name = settings.node_name
    node = plan.node(name)
    if node is None:
        known = ", ".join(n.name for n in plan.nodes)
        return [f"node_name: 节点 {name!r} 不在站点规划的 [[nodes]] 中（已有：{known}）"]
    problems: list[str] = []
    if node.kind == "bridge":
        return problems
    cascades = bool(node.parent) or any(n.parent == name for n in plan.nodes)
    if cascades and (settings.cascade.token is None or not settings.cascade.token.get_secret_value()):
        problems.append("cascade.token: 级联节点须设置级联令牌（CC_CASCADE__TOKEN）")
    if node.parent and not node.backup and any(name in c.nodes and node.parent in c.nodes for c in plan.conferences):
        problems.append(f"nodes.{name}.backup: 级联下级节点须配置电信备份线路的 SIP 地址模板")
    templates = [n.backup for n in plan.nodes if n.backup]
    if node.backup and templates.count(node.backup) > 1:
        # Two links in one bridge room would hear each other's nodes twice (a loop through the bridge).
        problems.append(f"nodes.{name}.backup: 备份线路地址模板与其他节点重复（每条级联链路须有自己的电信会议号）")
    if not settings.sip.enabled and cascades:
        problems.append("sip.enabled: 级联链路使用 SIP 呼叫，须启用 SIP")
    return problems


def this_node(settings: Settings, plan: SitePlan) -> Node | None:
    return plan.node(settings.node_name)


__all__ = ["cascade_problems", "this_node"]

"""The words questions are made of, Chinese and English, each mapped to what it means for a
query. Phrases are segmented by the same tokenizer as the questions, so a phrase matches the
tokens a question is cut into (see `chainsight.ask.text`)."""

from __future__ import annotations

# A meaning is (slot, value). Slots:
#   entity      what is asked about: "shipment" or "alert"
#   count/list  aggregation cues; which/what cues are "list"
#   have        possession ("which orders HAVE alerts"): the noun after it is an attribute
#   not         negation before an alert noun ("no alerts", 没有告警)
#   status_q    asks for one shipment's status / position / ETA (known words; a question
#               naming one shipment is about its status anyway)
#   arrive      arrival words (the time range then applies to the ETA)
#   temp        temperature words; history: history / log / curve words (known words)
#   abnormal    "out of range", 异常: with a temperature word, a temperature excursion
#   kind, severity, state, status, profile   filter values
#   late, risk  late or at-risk shipments
#   day         today / yesterday / ... ; last: "in the last", 过去; unit: minute/hour/day/week
#   action      a request to change something (not answered here)
#   neutral     words that carry no meaning for the query
Meaning = tuple[str, object]

TRANSIT = ("in_transit", "shipped")
_PHRASES: dict[Meaning, str] = {
    ("entity", "shipment"):
        "shipment shipments order orders delivery deliveries load loads consignment "
        "consignments parcel parcels package packages truck trucks vehicle vehicles cargo "
        "goods freight 订单 运单 货 货物 单 单子 票 票货 车 车辆 车子 包裹 发货单 货品 shipment们",
    ("entity", "alert"):
        "alert alerts alarm alarms 告警 报警 警报 预警 提醒",
    ("count", True): "how_many count number total 多少 几 几个 几单 几辆 几次 几票 几条 数量 "
                     "总数 多少个 多少单 多少票 多少次 多少辆 多少条 一共 共有 总共",
    ("list", True): "which what list show give display find any 哪些 有哪些 哪几 列出 列一下 "
                    "显示 看看 查 查一下 查下 查询 什么 看一下",
    ("have", True): "have has had got with 有 带 带有 有没有 有木有",
    ("not", True): "no without 没有 无 没",
    ("status_q", True): "status where where's whereabouts eta arrive arrival arrives arriving "
                        "when on_time delivered_yet 状态 在哪 在哪里 在哪儿 到哪 到哪了 到哪儿 "
                        "到哪儿了 到了 到 什么时候 啥时候 几点 多久 运输状态 位置 能到 到没 "
                        "送到 送到了没 签收了吗",
    ("arrive", True): "arrive arrives arriving arrival due eta 到达 预计 预计到达 抵达 到货",
    ("temp", True): "temperature temperatures temp temps 温度 温度变化",
    ("history", True): "history log record records recorded readings trend curve happened "
                       "记录 曲线 变化 历史 读数 走势 怎么样",
    ("abnormal", True): "excursion excursions out_of_range abnormal warm hot too_warm "
                        "异常 不正常 超标 超温 过热 偏高 温度异常 温度超标 超出范围",
    ("kind", "temperature_excursion"): "temperature_excursion 超温 温度超标",
    ("kind", "sensor_silent"): "silent offline sensor_offline no_signal 离线 失联 没信号 "
                               "无信号 断线 传感器离线 sensor_silent",
    ("kind", "route_deviation"): "off_route route_deviation route_deviations deviation "
                                 "deviations 偏航 偏离路线 偏离 偏离了路线 绕路",
    ("kind", "dwell_exceeded"): "dwell dwell_time dwell_exceeded 停留超时 滞留 停留 停太久 "
                                "dwell_time_exceeded",
    ("kind", "geofence_exit"): "geofence_exit geofence_exits exit exits 出围栏 离开围栏 "
                               "驶出 离开",
    ("kind", "geofence_enter"): "geofence_enter geofence_entries entries entry enter 进围栏 "
                                "进入围栏 进入 驶入",
    ("kind", "eta_late"): "eta_late eta延误 eta_late_alerts",
    ("severity", "critical"): "critical severe serious urgent 严重 紧急 critical级",
    ("severity", "warning"): "warning warnings 警告 警告级别",
    ("severity", "info"): "info informational notice 提示 提示级 信息级",
    ("state", "open"): "open unacknowledged unhandled 未处理 未确认 没处理 待处理 opne",
    ("state", "acknowledged"): "acknowledged 已确认 确认过",
    ("state", "resolved"): "resolved closed 已解决 已关闭 解决 解决了",
    ("status", TRANSIT): "in_transit on_the_road en_route transit 在途 运输中 路上 在路上",
    ("status", ("delivered",)): "delivered 已送达 送达 签收 已签收 已到货",
    ("status", ("cancelled",)): "cancelled canceled 已取消 取消的",
    ("status", ("allocated", "created")): "not_shipped unshipped 未发货 待发货",
    ("profile", "cold"): "cold_chain reefer reefers temperature_controlled 冷链 温控",
    ("profile", "frozen"): "frozen 冷冻 冷冻品 冷冻货 冻品 速冻",
    ("profile", "pharma"): "pharma pharmaceutical pharmaceuticals medicine medicines vaccine "
                           "vaccines drugs 医药 药品 疫苗 药",
    ("profile", "chilled"): "chilled chilled_food refrigerated 冷藏 冷藏食品",
    ("profile", "fresh"): "fresh fresh_produce produce 生鲜 果蔬",
    ("profile", "ambient"): "ambient 常温",
    ("late", True): "late delayed delay delays overdue behind_schedule 延误 延迟 晚到 迟到 "
                    "逾期 晚点 超期",
    ("risk", True): "risk at_risk risky 风险 有风险 风险订单",
    ("day", "today"): "today 今天 今日",
    ("day", "yesterday"): "yesterday 昨天 昨日",
    ("day", "daybefore"): "day_before_yesterday 前天",
    ("day", "tomorrow"): "tomorrow 明天 明日",
    ("day", "thisweek"): "this_week 本周 这周 这个星期 这星期",
    ("day", "lastweek"): "last_week 上周 上个星期",
    ("last", True): "last past recent within 过去 最近 近",
    ("unit", 1): "minute minutes min mins 分钟",
    ("unit", 60): "hour hours hr hrs 小时 个小时",
    ("unit", 1440): "day days 天",
    ("unit", 30): "半小时 半个小时",
    ("action", True): "cancel delete remove acknowledge resolve update change modify set "
                      "close assign reroute 删除 修改 更改 取消 确认掉 关闭 改 设置 撤销",
}
# Words that carry nothing for the query (function words, politeness, "now").
NEUTRAL = (
    "a an the is are was were be been being will would can could do does did of for to in "
    "on at by from into near around me my our us you your i we it its this that these those "
    "there here please pls plz tell all right now currently current today's s 's yet any "
    "some many much are_there show_me me any_of of_my their them went go going gone about "
    "over per and or yo ok hey hi is_there so still time at_the up get "
    "的 了 吗 呢 吧 啊 呀 嘛 是 在 我 我的 我们 你 帮 帮我 帮忙 请 一下 下 现在 当前 目前 "
    "所有 全部 都 还 还有 会 会不会 能 能不能 给 把 这 那 个 们 和 与 及 以及 里 附近 "
    "已经 已 一共 大概 发往 往 去 到了吗 中 级别 的货 了吗 啥 情况 一 些 多 了没 没有吗 "
    "是否 是不是 哪 出 有 要 为 对 跟 被 现 想 知道 能否 可以"
)
# Generic words in place names: matched only together with a distinctive word.
PLACE_GENERIC = frozenset(
    "hub port dc customer cold store route trunk trade centre center warehouse site depot "
    "terminal logistics distribution 仓 仓库 枢纽 冷库 配送 中心 配送中心 客户 港 站 园区".split())
NUMBERS = {"一": 1, "两": 2, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8,
           "九": 9, "十": 10, "十二": 12, "二十四": 24, "半": 0.5, "one": 1, "two": 2,
           "three": 3, "four": 4, "five": 5, "six": 6, "twelve": 12, "a": 1, "an": 1}


def phrases() -> dict[str, list[Meaning]]:
    """Every phrase (English multi-word phrases joined by `_`) with its meanings."""
    table: dict[str, list[Meaning]] = {}
    for meaning, words in _PHRASES.items():
        for word in words.split():
            table.setdefault(word, []).append(meaning)
    for word in NEUTRAL.split():
        table.setdefault(word, []).append(("neutral", True))
    return table

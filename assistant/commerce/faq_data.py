"""The demo shop's curated FAQ (its own policies, written for it), zh and en."""

from __future__ import annotations


def _faq(key: str, category: str, qzh: list[str], qen: list[str], azh: str, aen: str) -> dict:
    return dict(key=key, category=category, questions_zh=qzh, questions_en=qen,
                answer_zh=azh, answer_en=aen, status="published")


DEMO_FAQ: list[dict] = [
    _faq("shipping_fee", "shipping", ["运费多少", "包邮吗", "满多少包邮"],
         ["how much is shipping", "is shipping free", "free shipping threshold"],
         "全场满99元包邮，不满99元收取运费8元；偏远地区（新疆、西藏）运费15元。",
         "Shipping is free on orders of ¥99 or more; below that it costs ¥8. Remote regions (Xinjiang, Tibet) pay ¥15."),
    _faq("delivery_time", "shipping", ["多久能到", "几天发货", "什么时候发货"],
         ["how long does delivery take", "when will you ship", "delivery time"],
         "下单后48小时内从杭州仓发货，江浙沪一般1-2天送达，其他地区2-4天。",
         "Orders leave our Hangzhou warehouse within 48 hours; delivery takes 1-2 days in the Yangtze delta and 2-4 days elsewhere."),
    _faq("delivery_area", "shipping", ["能寄到香港吗", "配送范围", "海外能发吗"],
         ["do you ship to Hong Kong", "delivery area", "do you ship overseas"],
         "目前配送中国大陆全境，暂不支持港澳台及海外地址。",
         "We deliver everywhere in mainland China; Hong Kong, Macau, Taiwan and overseas addresses are not supported yet."),
    _faq("return_policy", "after_sales", ["退货政策", "七天无理由吗", "多久内可以退"],
         ["return policy", "how many days to return", "can I return without reason"],
         "签收后7天内支持无理由退货，商品需未使用且吊牌完整；质量问题30天内包退，运费由我们承担。",
         "You can return any item within 7 days of delivery without giving a reason if it is unused with tags; "
         "for quality problems the window is 30 days and we pay the return shipping."),
    _faq("refund_time", "after_sales", ["退款多久到账", "退款几天到"],
         ["how long does a refund take", "when do I get my refund"],
         "仓库收到退货后1个工作日内退款，原路退回，一般1-3个工作日到账。",
         "We refund within 1 working day after the warehouse receives the return, to the original payment method; it arrives in 1-3 working days."),
    _faq("payment_methods", "payment", ["支持什么支付方式", "能用花呗吗", "可以信用卡吗"],
         ["what payment methods", "can I pay by credit card", "do you accept alipay"],
         "支持支付宝、微信支付、银联卡和花呗分期；暂不支持货到付款。",
         "We accept Alipay, WeChat Pay, UnionPay cards and Huabei instalments; cash on delivery is not available."),
    _faq("membership_points", "membership", ["积分怎么用", "会员积分", "积分有什么用"],
         ["how do points work", "membership points", "what are points for"],
         "每消费1元得1积分，100积分可抵扣1元，积分有效期12个月。",
         "You earn 1 point per ¥1 spent; 100 points take ¥1 off an order. Points are valid for 12 months."),
    _faq("opening_hours", "service", ["客服几点上班", "人工客服时间", "你们几点下班"],
         ["customer service hours", "when are agents available", "opening hours"],
         "智能客服24小时在线；人工客服每天9:00-22:00在线。",
         "The assistant is online 24/7; human agents are available every day from 9:00 to 22:00."),
    _faq("invoice_policy", "payment", ["怎么开发票", "能开专票吗", "发票多久开"],
         ["how do I get an invoice", "VAT invoice", "when is the invoice issued"],
         "订单签收后可在订单详情申请电子普通发票或增值税专用发票，3个工作日内发送到邮箱。",
         "After delivery you can request an electronic general or VAT special invoice in the order details; it is emailed within 3 working days."),
    _faq("price_protection_policy", "after_sales", ["价保规则", "降价补差价吗"],
         ["price protection policy", "do you refund the difference if the price drops"],
         "签收后7天内同款降价可申请价保，差价以优惠券或原路退款返还，大促预售商品除外。",
         "If the same item gets cheaper within 7 days of delivery you can claim the difference as a coupon or a refund; presale items in big sales are excluded."),
    _faq("warranty_policy", "after_sales", ["保修多久", "电子产品保修"],
         ["how long is the warranty", "electronics warranty"],
         "数码3C商品享受1年质保，人为损坏和进水不在保修范围内。",
         "Electronics have a 1-year warranty; accidental damage and water damage are not covered."),
    _faq("address_change", "orders", ["能改地址吗", "地址填错了"],
         ["can I change my address", "wrong address on my order"],
         "订单发货前可以修改收货地址；发货后请联系人工客服协助拦截改派。",
         "You can change the delivery address until the order ships; after that a human agent can ask the courier to reroute it."),
]

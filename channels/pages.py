"""The demo storefront, the checkout page a checkout link opens, and product pictures."""

from __future__ import annotations

from html import escape

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from assistant.commerce.checkout import Cart
from assistant.commerce.models import Category, Product
from assistant.commerce.service import Prices

_PAGE = """<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
 body{{font-family:system-ui,-apple-system,"PingFang SC","Noto Sans CJK SC",sans-serif;margin:0;background:#f6f6f8;color:#222}}
 header{{background:#e4393c;color:#fff;padding:14px 20px;display:flex;justify-content:space-between;align-items:center}}
 header a{{color:#fff}} main{{max-width:1000px;margin:0 auto;padding:16px}}
 .grid{{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:14px}}
 .p{{background:#fff;border-radius:10px;overflow:hidden;box-shadow:0 1px 3px #0001}} .p img{{width:100%;display:block}}
 .p div{{padding:8px 10px;font-size:14px}} .price{{color:#e4393c;font-weight:600}}
 table{{width:100%;background:#fff;border-collapse:collapse;border-radius:10px;overflow:hidden}}
 td,th{{padding:10px;border-bottom:1px solid #eee;text-align:left}} .num{{text-align:right}}
 .total td{{font-weight:700;font-size:18px}} .discount td{{color:#e4393c}}
 .notice{{background:#fff3cd;padding:12px;border-radius:8px;margin:12px 0}}
 .pay{{display:inline-block;margin-top:16px;background:#e4393c;color:#fff;padding:12px 28px;border-radius:24px;text-decoration:none}}
</style></head><body>
<header><strong>{brand}</strong><span>{nav}</span></header>
<main>{body}</main>
{script}
</body></html>"""

_TEXT = {
    "zh": {"brand": "客服 kefu 演示商城", "title": "kefu 演示商城", "hot": "热卖商品", "switch": "English",
           "cart": "确认订单", "item": "商品", "qty": "数量", "price": "单价", "sum": "小计", "subtotal": "商品合计",
           "coupon": "优惠券", "total": "应付总额", "pay": "提交订单", "expired": "结算链接已过期，请回到聊天窗口重新获取。",
           "invalid": "结算链接无效。", "unavailable": "购物车里的商品已下架。",
           "below_threshold": "未达到优惠券使用门槛，未抵扣。", "used": "优惠券已使用过。", "exp_coupon": "优惠券已过期。",
           "chat": "右下角的客服可以帮您找商品、领券、查订单。"},
    "en": {"brand": "kefu demo shop", "title": "kefu demo shop", "hot": "Best sellers", "switch": "中文",
           "cart": "Your order", "item": "Item", "qty": "Qty", "price": "Price", "sum": "Amount", "subtotal": "Subtotal",
           "coupon": "Coupon", "total": "Total", "pay": "Place order", "expired": "This checkout link has expired; ask the assistant for a new one.",
           "invalid": "This checkout link is not valid.", "unavailable": "An item in this cart is no longer sold.",
           "below_threshold": "The coupon's minimum spend is not reached.", "used": "The coupon was already used.",
           "exp_coupon": "The coupon has expired.", "chat": "The assistant in the corner finds products, coupons and orders for you."},
}


def _yuan(fen: int) -> str:
    return f"¥{fen / 100:,.2f}"


def _page(lang: str, body: str, *, widget: bool) -> str:
    text = _TEXT[lang]
    other = "en" if lang == "zh" else "zh"
    script = f'<script src="/widget.js" data-lang="{lang}" defer></script>' if widget else ""
    return _PAGE.format(lang="zh-CN" if lang == "zh" else "en", title=text["title"], brand=text["brand"],
                        nav=f'<a href="/?lang={other}">{text["switch"]}</a>', body=body, script=script)


def storefront(session: Session, lang: str) -> str:
    text = _TEXT[lang]
    products = session.scalars(select(Product).join(Category).options(selectinload(Product.variants))
                               .order_by(Product.id).limit(120)).all()[::5][:24]
    prices = Prices(session)
    cards = "".join(
        f'<div class="p"><img src="/shop/images/{escape(p.sku)}.svg" alt=""><div>'
        f'{escape(p.name_zh if lang == "zh" else p.name_en)}<br><span class="price">'
        f'{_yuan(min(prices.of(v) for v in p.variants))}</span></div></div>'
        for p in products if p.variants)
    body = f'<p>{text["chat"]}</p><h2>{text["hot"]}</h2><div class="grid">{cards}</div>'
    return _page(lang, body, widget=True)


def checkout_page(cart: Cart, lang: str) -> str:
    text = _TEXT[lang]
    rows = "".join(
        f'<tr class="line" data-sku="{escape(line.sku)}"><td><img src="/shop/images/{escape(line.product_sku)}.svg" width="48" alt=""> '
        f'{escape(line.name_zh if lang == "zh" else line.name_en)} · {escape(line.color_zh if lang == "zh" else line.color_en)} · '
        f'{escape(line.size)}</td><td class="num">{line.quantity}</td><td class="num">{_yuan(line.unit_price)}</td>'
        f'<td class="num">{_yuan(line.total)}</td></tr>' for line in cart.lines)
    summary = f'<tr class="subtotal"><td colspan="3">{text["subtotal"]}</td><td class="num">{_yuan(cart.subtotal)}</td></tr>'
    if cart.coupon_code and cart.discount:
        summary += (f'<tr class="discount"><td colspan="3">{text["coupon"]} {escape(cart.coupon_code)}</td>'
                    f'<td class="num">-{_yuan(cart.discount)}</td></tr>')
    notice = ""
    if cart.coupon_problem:
        key = {"expired": "exp_coupon"}.get(cart.coupon_problem, cart.coupon_problem)
        notice = f'<div class="notice">{text[key]}</div>'
    summary += f'<tr class="total"><td colspan="3">{text["total"]}</td><td class="num" id="total">{_yuan(cart.total)}</td></tr>'
    body = (f'<h2>{text["cart"]}</h2>{notice}<table><tr><th>{text["item"]}</th><th class="num">{text["qty"]}</th>'
            f'<th class="num">{text["price"]}</th><th class="num">{text["sum"]}</th></tr>{rows}{summary}</table>'
            f'<a class="pay" href="#" onclick="return false">{text["pay"]}</a>')
    return _page(lang, body, widget=False)


def checkout_error_page(code: str, lang: str) -> str:
    return _page(lang, f'<div class="notice" id="checkout-error">{_TEXT[lang][code]}</div>', widget=False)


def product_svg(product: Product) -> str:
    hue = product.image_hue
    label = escape(product.name_en.split(" ", 1)[-1][:30])
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="320" height="240" viewBox="0 0 320 240">'
            f'<defs><linearGradient id="g" x1="0" y1="0" x2="1" y2="1"><stop offset="0" stop-color="hsl({hue},70%,78%)"/>'
            f'<stop offset="1" stop-color="hsl({(hue + 40) % 360},70%,58%)"/></linearGradient></defs>'
            f'<rect width="320" height="240" fill="url(#g)"/><circle cx="160" cy="105" r="56" fill="#ffffff55"/>'
            f'<text x="160" y="122" font-size="48" text-anchor="middle" fill="#fff" font-family="sans-serif">'
            f'{escape(product.name_zh[-2:])}</text><text x="160" y="210" font-size="15" text-anchor="middle" '
            f'fill="#fff" font-family="sans-serif">{label}</text></svg>')

from django.apps import AppConfig
from django.core.signals import request_finished
from django.db import connection


class ShopConfig(AppConfig):
    name = "shop"

    def ready(self):
        from . import views

        def finished(**kwargs):
            # Connected after Django's own close_old_connections: it sees
            # whether the connection a close callback opened was closed.
            if views.AUDIT and views.AUDIT[-1] == "callback used the database":
                views.AUDIT.append(f"request_finished: connection closed={connection.connection is None}")

        request_finished.connect(finished, weak=False)
